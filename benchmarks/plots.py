"""Draw the benchmark plots from the JSON in benchmarks/results/ (only from what a benchmark wrote).

python benchmarks/plots.py        # writes benchmarks/plots/*.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
RESULTS, PLOTS = HERE / "results", HERE / "plots"


def speedup_vs_batch() -> Path | None:
    path = RESULTS / "speed.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    families = [f for f in ("deit_small", "fashion_mnist") if f in results]
    figure, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4), squeeze=False)
    for axis, family in zip(axes[0], families):
        models = results[family]["models"]
        for index, (name, cost) in enumerate(m for m in models.items() if m[0] != "dense"):
            batches = [int(b) for b in cost["speedup"]]
            color = f"C{index}"
            axis.plot(batches, list(cost["speedup"].values()), marker="o", color=color, label=f"{name} (measured)")
            axis.axhline(cost["ideal_speedup"], color=color, linestyle=":", label=f"{name} (FLOPs ideal)")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size")
        axis.set_ylabel("speedup over dense (CPU, 2 threads)")
        axis.set_title(
            {"deit_small": "DeiT-Small-shaped, 224px", "fashion_mnist": "Fashion-MNIST ViT 64x4, 28px"}[family]
        )
        axis.axhline(1.0, color="gray", linewidth=0.8)
        axis.legend(fontsize=7, loc="lower center", ncol=2)
        axis.set_ylim(bottom=0.6)
    figure.suptitle(f"Exported GOHSP models, {results['machine']['date']}, torch {results['machine']['torch']}")
    figure.tight_layout()
    out = PLOTS / "speedup_vs_batch.png"
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


if __name__ == "__main__":
    PLOTS.mkdir(exist_ok=True)
    for plot in (speedup_vs_batch,):
        written = plot()
        print("wrote", written) if written else print(f"skipped {plot.__name__}: no results yet")
