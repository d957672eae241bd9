"""Does the DeiT recipe help? The README's main command (examples/run_gohsp.py on Fashion-MNIST: a 4-block ViT
trained from scratch, then pruned by GOHSP) at 60%, with and without `--recipe deit`, same epochs.

    python examples/prepare_fashion_mnist.py --output_dir data/fashion_mnist   # once
    python benchmarks/augmentation.py            # -> results/augmentation/<run>.json, existing runs skipped
    python benchmarks/augmentation.py --table    # the markdown table of benchmarks/README.md

Each run writes dense and pruned accuracy (all 10,000 test images) the moment it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "augmentation"
BASE = [str(ROOT / "examples" / "configs" / "fashion_mnist_tiny.json"), "--target_sparsity", "0.6"]
RUNS = {"none": [], "deit": ["--recipe", "deit"]}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import machine  # noqa: E402


def run(name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(ROOT / "examples" / "run_gohsp.py"), *BASE, *extra, "--output_dir", tmp]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        results = json.loads((Path(tmp) / "gohsp_results.json").read_text())
    return {
        "run": name, "recipe": name, "method": "gohsp", "sparsity": 0.6, "seed": 0,
        "dense_accuracy": results["dense"]["accuracy"], "accuracy": results["pruned"]["accuracy"],
        "accuracy_after_hard_prune": results["after_hard_prune"]["accuracy"],
        "achieved_sparsity": results["achieved_sparsity"], "params": results["pruned"]["params"],
        "shape": "64x4-mlp128", "wall_seconds": time.perf_counter() - start, "machine": machine(),
        "command": "python benchmarks/augmentation.py",
        "cli": " ".join(["python examples/run_gohsp.py examples/configs/fashion_mnist_tiny.json", *BASE[1:], *extra]),
    }  # fmt: skip


def table() -> str:
    rows = ["| recipe | dense | GOHSP 60% | right after the hard prune |", "|---|---|---|---|"]
    for name in RUNS:
        path = RESULTS / f"{name}.json"
        if path.exists():
            r = json.loads(path.read_text())
            rows.append(f"| {name} | {100 * r['dense_accuracy']:.2f} | {100 * r['accuracy']:.2f} | "
                        f"{100 * r['accuracy_after_hard_prune']:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="print the table from the result files and exit")
    if parser.parse_args().table:
        print(table())
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, extra in RUNS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            print(f"[augmentation] {name}: done already, skipped")
            continue
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(run(name, extra), indent=1))
        os.replace(tmp, path)  # whole or absent
        print(f"[augmentation] {name}: written to {path.relative_to(ROOT)}")
    print(table())


if __name__ == "__main__":
    main()
