"""The markdown tables of `benchmarks/README.md`'s accuracy section, made from the JSON that `accuracy.py` wrote.

python benchmarks/accuracy_tables.py [results_dir]     # default: benchmarks/results/accuracy
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).parent / "results" / "accuracy"
METHOD_ORDER = ("gohsp", "somp", "sgmp", "random", "torch_pruning")
ABLATIONS = {
    "gohsp-s60-seed0": "GOHSP default: cosine graph, keep_distinct, per block; heads = target / 2; ADMM",
    "ablation-ranking-kl-s60-seed0": "ranking: exp(-KL) graph",
    "ablation-ranking-keep_central-s60-seed0": "ranking: reversed order (keep_central)",
    "ablation-ranking-global-s60-seed0": "ranking: global scope",
    "ablation-ranking-weight_norm-s60-seed0": "ranking: weight norm instead of the graph",
    "ablation-ranking-random-s60-seed0": "ranking: random heads",
    "ablation-no_admm-s60-seed0": "no ADMM: hard prune of the dense weights, same masks, same epochs",
    "ablation-heads0-s60-seed0": "split: no heads removed (columns and neurons only)",
    "ablation-heads60-s60-seed0": "split: 60% of heads removed",
    "ablation-admm_update_steps10-s60-seed0": "ADMM: Z/U updates every 10 steps instead of 50",
    "ablation-admm2_ft1-s60-seed0": "2 epochs of ADMM and 1 of fine-tuning (instead of 1 and 2)",
    "gohsp-s80-seed0": "80%: GOHSP default (1 epoch of ADMM, 2 of fine-tuning)",
    "ablation-admm2_ft1-s80-seed0": "80%: 2 epochs of ADMM and 1 of fine-tuning",
}


def load(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def by_method(results: dict[str, dict]) -> dict[tuple[str, float], list[dict]]:
    """Main-table runs (seed 0 and the extra seeds) grouped by (method, sparsity)."""
    groups = defaultdict(list)
    for name, r in results.items():
        if name.startswith(("ablation-", "dense", "control")):
            continue
        groups[(r["method"], r["sparsity"])].append(r)
    return {key: sorted(runs, key=lambda r: r["seed"]) for key, runs in groups.items()}


def spread(runs: list[dict]) -> str:
    accs = [r["accuracy"] for r in runs]
    if len(accs) == 1:
        return pct(accs[0])
    return f"{pct(statistics.mean(accs))} ({', '.join(pct(a) for a in accs)})"


def main_table(results: dict[str, dict]) -> list[str]:
    lines = ["| method | sparsity | test accuracy, % (seeds) | after hard prune, % | params | MFLOPs | wall min |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("dense", "control"):
        if name in results:
            r = results[name]
            lines.append(f"| {name} | 0% | {pct(r['accuracy'])} | - | {r['params']:,} | {r['flops'] / 1e6:.1f} | "
                         f"{r['wall_seconds'] / 60:.1f} |")  # fmt: skip
    groups = by_method(results)
    for sparsity in sorted({s for _, s in groups}):
        for method in METHOD_ORDER:
            runs = groups.get((method, sparsity))
            if not runs:
                continue
            r = runs[0]
            wall = statistics.mean(x["wall_seconds"] for x in runs) / 60
            after = statistics.mean(x["accuracy_after_hard_prune"] for x in runs)
            lines.append(f"| {method} | {pct(r['achieved_sparsity'])}% | {spread(runs)} | {pct(after)} | "
                         f"{r['params']:,} | {r['flops'] / 1e6:.1f} | {wall:.1f} |")  # fmt: skip
    return lines


def goals(results: dict[str, dict]) -> list[str]:
    groups, lines = by_method(results), []
    mean = {key: statistics.mean(r["accuracy"] for r in runs) for key, runs in groups.items()}
    if ("gohsp", 0.6) in mean and "control" in results:
        gap = 100 * (mean[("gohsp", 0.6)] - results["control"]["accuracy"])
        verdict = "met" if gap >= -0.5 else "not met"
        lines.append(f"- GOHSP at 60% vs the dense control: {gap:+.2f} points (goal: within 0.5): **{verdict}**.")
    for sparsity in (0.6, 0.8):
        if ("gohsp", sparsity) not in mean:
            continue
        others = {m: mean[(m, sparsity)] for m in METHOD_ORDER[1:] if (m, sparsity) in mean}
        if not others:
            continue
        best = max(others, key=others.get)
        lead = 100 * (mean[("gohsp", sparsity)] - others[best])
        verdict = "met" if lead >= 0.5 else "not met"
        lines.append(f"- GOHSP at {sparsity:.0%} vs the best other method ({best}): {lead:+.2f} points "
                     f"(goal: at least +0.5): **{verdict}**.")  # fmt: skip
    return lines


def ablation_table(results: dict[str, dict]) -> list[str]:
    lines = ["| variant (60% unless marked, seed 0) | test accuracy, % | vs default | after hard prune, % | sparsity |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, label in ABLATIONS.items():
        if name not in results:
            continue
        r = results[name]
        base = results.get(f"gohsp-s{round(100 * r['sparsity'])}-seed0")  # the default at the same sparsity
        delta = f"{100 * (r['accuracy'] - base['accuracy']):+.2f}" if base else "-"
        lines.append(f"| {label} | {pct(r['accuracy'])} | {delta} | {pct(r['accuracy_after_hard_prune'])} | "
                     f"{pct(r['achieved_sparsity'])}% |")  # fmt: skip
    return lines


def dense_curve(results: dict[str, dict]) -> list[str]:
    if "dense" not in results:
        return []
    r = results["dense"]
    curve = r["learning_curve"]
    marks = sorted({0, len(curve) // 4, len(curve) // 2, round(0.8 * len(curve)) - 1, len(curve) - 1})
    lines = ["| epoch | " + " | ".join(f"{curve[i]['epoch']:g}" for i in marks) + " |",
             "|---|" + "---|" * len(marks),
             "| test accuracy, % | " + " | ".join(pct(curve[i]["accuracy"]) for i in marks) + " |"]  # fmt: skip
    lines.append(f"\nLast 20% of the epochs added {100 * r['last_20pct_gain']:+.2f} points (goal: under 0.3).")
    return lines


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    results = load(folder)
    if not results:
        raise SystemExit(f"No results in {folder}: run benchmarks/accuracy.py first.")
    for title, lines in (("Dense reference", dense_curve(results)), ("Accuracy at equal size", main_table(results)),
                         ("Goals", goals(results)), ("Ablations", ablation_table(results))):  # fmt: skip
        print(f"### {title}\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
