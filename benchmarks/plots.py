"""Draw the benchmark plots from the JSON in benchmarks/results/ (only from what a benchmark wrote).

python benchmarks/plots.py        # writes benchmarks/plots/*.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from accuracy_tables import is_ablation, pass_of  # noqa: E402  (benchmarks/ is the script's folder)

HERE = Path(__file__).parent
RESULTS, PLOTS = HERE / "results", HERE / "plots"
METHODS = {"gohsp": "GOHSP", "gohsp_paper": "GOHSP (paper)", "somp": "SOMP", "sgmp": "SGMP", "random": "random",
           "torch_pruning": "Torch-Pruning"}  # fmt: skip


def save(figure, out: Path) -> Path:
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def speedup_vs_batch(out_dir: Path) -> Path | None:
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
    return save(figure, out_dir / "speedup_vs_batch.png")


def load_accuracy(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def accuracy_vs_sparsity(folder: Path, out_dir: Path) -> Path | None:
    results = load_accuracy(folder)
    groups = defaultdict(list)
    for name, r in results.items():
        if pass_of(name) == "main" and not is_ablation(name) and r["method"] in METHODS:
            groups[r["method"]].append(r)  # the main pass
    if not groups:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for index, (method, label) in enumerate(METHODS.items()):
        by_sparsity = defaultdict(list)
        for r in groups.get(method, []):
            by_sparsity[r["sparsity"]].append(100 * r["accuracy"])
        if not by_sparsity:
            continue
        xs = sorted(by_sparsity)
        means = [statistics.mean(by_sparsity[x]) for x in xs]
        low = [m - min(by_sparsity[x]) for m, x in zip(means, xs)]
        high = [max(by_sparsity[x]) - m for m, x in zip(means, xs)]
        axis.errorbar([100 * x for x in xs], means, yerr=[low, high], marker="o", capsize=3, color=f"C{index}",
                      label=label)  # fmt: skip
    for name, style in (("dense", ":"), ("control", "--")):
        if name in results:
            axis.axhline(100 * results[name]["accuracy"], color="gray", linestyle=style, label=f"{name} (0%)")
    axis.set_xlabel("parameters removed, %")
    axis.set_ylabel("test accuracy, %")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    machine = next(iter(results.values()))["machine"]
    axis.set_title(f"Fashion-MNIST ViT, same extra epochs for every method ({machine['date']})", fontsize=9)
    return save(figure, out_dir / "accuracy_vs_sparsity.png")


def dense_learning_curve(folder: Path, out_dir: Path) -> Path | None:
    r = load_accuracy(folder).get("dense")
    if r is None:
        return None
    curve = r["learning_curve"]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.plot([c["epoch"] for c in curve], [100 * c["accuracy"] for c in curve], marker=".")
    last = curve[round(0.8 * len(curve)) - 1]["epoch"]
    axis.axvspan(last, curve[-1]["epoch"], color="gray", alpha=0.15, label="last 20% of the epochs")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test accuracy, %")
    axis.set_title(f"Dense reference: {100 * curve[-1]['accuracy']:.2f}% after {curve[-1]['epoch']:g} epochs "
                   f"(last 20%: {100 * r['last_20pct_gain']:+.2f} points)", fontsize=9)  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save(figure, out_dir / "dense_learning_curve.png")


def gohsp_structure(folder: Path, out_dir: Path) -> Path | None:
    results = load_accuracy(folder)
    runs = [(s, results[f"gohsp-s{s}-seed0"]) for s in (60, 80) if f"gohsp-s{s}-seed0" in results]
    if not runs:
        return None
    figure, axes = plt.subplots(len(runs), 2, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for row, (sparsity, r) in zip(axes, runs):
        blocks = list(range(len(r["structure"])))
        heads = [layer["heads"] for layer in r["structure"]]
        row[0].bar(blocks, heads, color="C0")
        row[0].set_ylim(0, r["settings"]["num_attention_heads"] + 0.5)
        row[0].set_title(f"GOHSP {sparsity}%: kept heads per block", fontsize=9)
        width = 0.27
        for offset, (key, label) in enumerate((("qk_dim", "q/k dims"), ("v_dim", "v dims"), ("mlp", "MLP neurons"))):
            values = [layer[key] for layer in r["structure"]]
            row[1].bar([b + (offset - 1) * width for b in blocks], values, width, label=label, color=f"C{offset + 1}")
        head_dim = r["settings"]["hidden_size"] // r["settings"]["num_attention_heads"]
        row[1].set_title(f"GOHSP {sparsity}%: kept q/k and v dims per head (dense {head_dim}) and MLP neurons "
                         f"(dense {r['settings']['intermediate_size']})", fontsize=9)  # fmt: skip
        row[1].legend(fontsize=7)
        for axis in row:
            axis.set_xlabel("block")
            axis.set_xticks(blocks)
    return save(figure, out_dir / "gohsp_structure.png")


def head_scores(folder: Path, out_dir: Path) -> Path | None:
    r = load_accuracy(folder).get("gohsp-s60-seed0")
    if r is None or r.get("head_scores") is None:
        return None
    # Per block the scores sum to 1; times the head count, 1.0 is a uniform score.
    kept = r.get("kept_heads") or [[h for h, k in enumerate(row) if k] for row in r["head_mask"]]
    mask = [[h in layer for h in range(len(row))] for layer, row in zip(kept, r["head_scores"])]
    scores = [[len(row) * x for x in row] for row in r["head_scores"]]
    figure, axis = plt.subplots(figsize=(1.2 * len(scores[0]) + 2.5, 0.5 * len(scores) + 1.5))
    image = axis.imshow(scores, cmap="viridis", aspect="auto")
    for layer, row in enumerate(mask):
        for head, kept in enumerate(row):
            axis.text(head, layer, f"{scores[layer][head]:.4f}" + ("" if kept else "\npruned"), ha="center",
                      va="center", fontsize=7, color="white" if kept else "red")  # fmt: skip
    axis.set_xlabel("head")
    axis.set_ylabel("block")
    axis.set_xticks(range(len(scores[0])))
    axis.set_yticks(range(len(scores)))
    figure.colorbar(image, label="stationary probability x heads per block")
    axis.set_title("GOHSP head scores (60%, seed 0)", fontsize=9)
    return save(figure, out_dir / "head_scores.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accuracy_dir", type=Path, default=RESULTS / "accuracy")
    parser.add_argument("--plots_dir", type=Path, default=PLOTS)
    args = parser.parse_args()
    args.plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "speedup_vs_batch": lambda: speedup_vs_batch(args.plots_dir),
        "accuracy_vs_sparsity": lambda: accuracy_vs_sparsity(args.accuracy_dir, args.plots_dir),
        "dense_learning_curve": lambda: dense_learning_curve(args.accuracy_dir, args.plots_dir),
        "gohsp_structure": lambda: gohsp_structure(args.accuracy_dir, args.plots_dir),
        "head_scores": lambda: head_scores(args.accuracy_dir, args.plots_dir),
    }
    for name, plot in plots.items():
        written = plot()
        print("wrote", written) if written else print(f"skipped {name}: no results yet")


if __name__ == "__main__":
    main()
