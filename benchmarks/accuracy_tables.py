"""The markdown tables of `benchmarks/README.md`'s accuracy section, made from the JSON that `accuracy.py` wrote.

python benchmarks/accuracy_tables.py [results_dir]     # default: benchmarks/results/accuracy
python benchmarks/accuracy_tables.py --pooled results_dir [...]   # GOHSP's margin over several dense models
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).parent / "results" / "accuracy"
METHOD_ORDER = ("gohsp", "gohsp_paper", "somp", "sgmp", "random", "torch_pruning", "gohsp+kd", "torch_pruning+kd",
                "gohsp+kd_cnn", "torch_pruning+kd_cnn", "gohsp+ema", "torch_pruning+ema")  # fmt: skip
# run-name prefix -> pass, longer prefixes first (a run belongs to the first prefix it starts with)
PASSES = {"": "main", "mid45-": "mid45", "mid-": "mid", "long-": "long", "high-mid-": "high-mid", "high-": "high",
          "mlp4-mid-": "mlp4-mid", "mlp4-high-": "mlp4-high", "mlp4-long-": "mlp4-long", "mlp4-": "mlp4",
          "small-long-": "small-long", "small-": "small"}  # fmt: skip


def load(folder: Path) -> dict[str, dict]:
    """Every result in `folder`; exits when a run was made from another dense model than its pass's `dense`
    result (its `dense_sha256` differs), since the tables compare runs as if they started from the same model."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    stray = []
    for name, r in results.items():
        dense = dense_of(results, r)
        if dense is not None and r.get("dense_sha256") not in (None, dense.get("dense_sha256")):
            stray.append(name)
    if stray:
        raise SystemExit(
            f"{len(stray)} result(s) in {folder} were made from another dense model than their pass's dense result "
            f"(dense_sha256 differs): {', '.join(stray)}. Move them away and rerun them with accuracy.py."
        )
    return results


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def shape(r: dict) -> str:
    if r.get("shape"):
        return r["shape"]
    s = r["settings"]  # results written before runs recorded their shape
    return f"{s['hidden_size']}x{s['num_hidden_layers']}-mlp{s['intermediate_size']}"


def dense_of(results: dict[str, dict], r: dict) -> dict | None:
    """The dense result of run `r`'s shape: every pass of a shape starts from that shape's one dense model."""
    return next((d for d in results.values() if d["method"] == "dense" and shape(d) == shape(r)), None)


def control_of(results: dict[str, dict], r: dict) -> dict | None:
    """The dense control trained as long as run `r` was (its shape's dense model, the pass's extra epochs)."""
    return next((c for c in results.values() if c["method"] == "control" and shape(c) == shape(r)
                 and c["extra_epochs"] == r["extra_epochs"]), None)  # fmt: skip


def pass_of(name: str) -> str:
    return next((p for prefix, p in PASSES.items() if prefix and name.startswith(prefix)), "main")


def is_ablation(name: str) -> bool:
    return re.match(r"^(?:[a-z0-9]+-)*ablation-", name) is not None


def groups(results: dict[str, dict]) -> dict[tuple, list[dict]]:
    """Pruning runs grouped by (pass, method, sparsity), seeds in order."""
    found = defaultdict(list)
    for name, r in results.items():
        if is_ablation(name) or r["method"] in ("dense", "control", "teacher_cnn"):
            continue
        found[(pass_of(name), r["method"], r["sparsity"])].append(r)
    return {key: sorted(runs, key=lambda r: r["seed"]) for key, runs in found.items()}


def mean(runs: list[dict], key: str = "accuracy") -> float:
    return statistics.mean(r[key] for r in runs)


def spread(runs: list[dict]) -> str:
    if len(runs) == 1:
        return pct(runs[0]["accuracy"])
    return f"{pct(mean(runs))} ({', '.join(pct(r['accuracy']) for r in runs)})"


def references(results: dict[str, dict]) -> list[str]:
    lines = [
        "| pass | shape | extra epochs | dense, % | dense control, % | params | MFLOPs |",
        "|---|---|---|---|---|---|---|",
    ]
    for prefix, name in PASSES.items():
        control = results.get(f"{prefix}control")
        dense = control and dense_of(results, control)
        if dense is None:
            continue
        lines.append(f"| {name} | {control['shape']} | {control['extra_epochs']:g} | {pct(dense['accuracy'])} | "
                     f"{pct(control['accuracy'])} | {control['params']:,} | {control['flops'] / 1e6:.1f} |")  # fmt: skip
    return lines


def teachers(results: dict[str, dict]) -> list[str]:
    """The `+kd_cnn` column's CNN teacher of each pass that has one."""
    lines = ["| pass | teacher | epochs | test accuracy, % | params |", "|---|---|---|---|---|"]
    for name, r in results.items():
        if r["method"] == "teacher_cnn":
            lines.append(f"| {pass_of(name)} | CNN | {r['settings']['cnn_teacher_epochs']:g} | {pct(r['accuracy'])} "
                         f"| {r['params']:,} |")  # fmt: skip
    return lines if len(lines) > 2 else []


def table(results: dict[str, dict], pass_name: str) -> list[str]:
    lines = ["| method | removed | test accuracy, % (seeds) | before / after hard prune, % | hidden | params | wall min |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    found = groups(results)
    for sparsity in sorted({s for p, _, s in found if p == pass_name}):
        for method in METHOD_ORDER:
            runs = found.get((pass_name, method, sparsity))
            if not runs:
                continue
            r = runs[0]
            before, after = mean(runs, "accuracy_before_hard_prune"), mean(runs, "accuracy_after_hard_prune")
            lines.append(f"| {method} | {pct(r['achieved_sparsity'])}% | {spread(runs)} | {pct(before)} / "
                         f"{pct(after)} | {r.get('hidden_size', '-')} | {r['params']:,} | "
                         f"{mean(runs, 'wall_seconds') / 60:.1f} |")  # fmt: skip
    return lines if len(lines) > 2 else []


def goals(results: dict[str, dict]) -> list[str]:
    found, lines = groups(results), []
    for (pass_name, method, sparsity), runs in sorted(found.items()):
        if method != "gohsp" or sparsity not in (0.6, 0.8) or (pass_name, "torch_pruning", sparsity) not in found:
            continue
        tp = found[(pass_name, "torch_pruning", sparsity)]
        lead = 100 * (mean(runs) - mean(tp))
        lines.append(f"- {pass_name} ({runs[0]['shape']}, +{runs[0]['extra_epochs']:g} epochs), {sparsity:.0%}: GOHSP "
                     f"{pct(mean(runs))} (n={len(runs)}) vs Torch-Pruning {pct(mean(tp))} (n={len(tp)}): {lead:+.2f} "
                     f"points (goal: at least +0.5): **{'met' if lead >= 0.5 else 'not met'}**.")  # fmt: skip
    lines += against_control(results, found)
    lines += paired(found)
    if ("main", "gohsp", 0.6) in found and "control" in results:
        gap = 100 * (mean(found[("main", "gohsp", 0.6)]) - results["control"]["accuracy"])
        verdict = "met" if gap >= -0.5 else "not met"
        lines.append(f"- main, 60%: GOHSP vs the dense control: {gap:+.2f} points (goal: within 0.5): **{verdict}**.")
    for pass_name in PASSES.values():
        runs = found.get((pass_name, "gohsp", 0.8))
        if runs:
            drop = 100 * (mean(runs, "accuracy_before_hard_prune") - mean(runs, "accuracy_after_hard_prune"))
            verdict = "met" if drop < 1 else "not met"
            lines.append(f"- {pass_name}, 80%: accuracy lost at the hard prune itself: {drop:.2f} points (goal: "
                         f"under 1): **{verdict}**.")  # fmt: skip
    return lines


def against_control(results: dict[str, dict], found: dict[tuple, list[dict]]) -> list[str]:
    """Both tools against the dense control trained as long: GOHSP's margin over Torch-Pruning is at most what
    separates Torch-Pruning from the control unless GOHSP ends above the control, so this says how far above it
    GOHSP would have to end for a 0.5-point lead."""
    lines = []
    for (pass_name, method, sparsity), runs in sorted(found.items()):
        tp, control = found.get((pass_name, "torch_pruning", sparsity)), control_of(results, runs[0])
        if method != "gohsp" or sparsity not in (0.6, 0.8) or not tp or not control:
            continue
        g, t = 100 * (mean(runs) - control["accuracy"]), 100 * (mean(tp) - control["accuracy"])
        lines.append(f"- {pass_name}, {sparsity:.0%}, against the dense control trained as long "
                     f"({pct(control['accuracy'])}): GOHSP {g:+.2f}, Torch-Pruning {t:+.2f}; a 0.5-point lead needs "
                     f"GOHSP at {0.5 + t:+.2f} or above.")  # fmt: skip
    return lines


def paired(found: dict[tuple, list[dict]]) -> list[str]:
    """GOHSP minus Torch-Pruning over the runs of the same pass, sparsity and seed, pooled per shape and sparsity:
    the mean of those differences and its standard error, which says how much of a lead the seeds can resolve.
    A recipe column (`+kd`, `+ema`) is paired with the same column of the other tool, on lines of its own."""
    pairs = defaultdict(list)
    for (pass_name, method, sparsity), runs in found.items():
        column = method.removeprefix("gohsp")
        if method == column or column[:1] not in ("", "+"):  # not gohsp (gohsp_paper is another method)
            continue
        tp = {r["seed"]: r for r in found.get((pass_name, "torch_pruning" + column, sparsity), [])}
        # the goals' 60/80% and any other budget with pairs (90%)
        pairs[(column, runs[0]["shape"], sparsity)] += [100 * (r["accuracy"] - tp[r["seed"]]["accuracy"])
                                                        for r in runs if r["seed"] in tp]  # fmt: skip
    lines = []
    for (column, shape_name, sparsity), diffs in sorted(pairs.items()):
        if len(diffs) < 2:
            continue
        error = statistics.stdev(diffs) / len(diffs) ** 0.5
        lines.append(f"- {shape_name}, {sparsity:.0%}, every pass, paired by seed: GOHSP{column.upper()} - "
                     f"Torch-Pruning{column.upper()} {statistics.mean(diffs):+.2f} ± {error:.2f} points (mean ± "
                     f"standard error of {len(diffs)} pairs).")  # fmt: skip
    return lines


def ablation_table(results: dict[str, dict], prefix: str = "") -> list[str]:
    """gohsp with one knob changed against the default gohsp runs of the same seeds (mean over the seeds run), at
    the goals' 60/80% and any other budget the pass's ablations ran at (90% on the high passes)."""
    pattern = re.compile(rf"^{re.escape(prefix)}ablation-(.+)-s(\d+)-seed(\d+)$")
    runs = defaultdict(list)
    for name, r in results.items():
        if m := pattern.match(name):
            runs[(m[1], int(m[2]))].append(r)
    present = {sparsity for _, sparsity in runs}
    budgets = [b for b in (60, 80) if present & {60, 80}] + sorted(present - {60, 80})
    lines = ["| gohsp with | " + " | ".join(f"{b}%: accuracy (seeds) | vs default | before / after hard prune"
                                            for b in budgets) + " |", "|---" * (1 + 3 * len(budgets)) + "|"]  # fmt: skip
    for variant in sorted({v for v, _ in runs}):
        cells = []
        for sparsity in budgets:
            found = sorted(runs.get((variant, sparsity), []), key=lambda r: r["seed"])
            base = [results.get(f"{prefix}gohsp-s{sparsity}-seed{r['seed']}") for r in found]
            if not found:
                cells += ["-", "-", "-"]
                continue
            delta = f"{100 * (mean(found) - mean(base)):+.2f}" if all(base) else "-"
            cells += [spread(found), delta, f"{pct(mean(found, 'accuracy_before_hard_prune'))} / "
                      f"{pct(mean(found, 'accuracy_after_hard_prune'))}"]  # fmt: skip
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def pooled(folders: list[Path]) -> list[str]:
    """GOHSP's margin over Torch-Pruning pooled over results folders (each from its own dense model): per shape,
    extra epochs and target, the mean of every default gohsp run minus that of every torch_pruning run; then each
    tool's mean distance from its folder's dense control trained as long (over the runs whose folder has one)."""
    runs, offsets = defaultdict(list), defaultdict(list)
    for folder in folders:
        results = load(folder)
        for (_, method, sparsity), found in groups(results).items():
            if method in ("gohsp", "torch_pruning"):
                key = (found[0]["shape"], found[0]["extra_epochs"], sparsity, method)
                runs[key] += found
                controls = [control_of(results, r) for r in found]
                offsets[key] += [100 * (r["accuracy"] - c["accuracy"]) if c else None for r, c in zip(found, controls)]
    lines = []
    for (shape_, epochs, sparsity, method), gohsp in sorted(runs.items()):
        tp = runs.get((shape_, epochs, sparsity, "torch_pruning"))
        if method == "gohsp" and tp:
            line = (
                f"- {shape_}, +{epochs:g} epochs, {sparsity:.0%}: GOHSP {pct(mean(gohsp))} (n={len(gohsp)}) "
                f"- Torch-Pruning {pct(mean(tp))} (n={len(tp)}) = {100 * (mean(gohsp) - mean(tp)):+.2f} points"
            )
            g = [x for x in offsets[(shape_, epochs, sparsity, "gohsp")] if x is not None]
            t = [x for x in offsets[(shape_, epochs, sparsity, "torch_pruning")] if x is not None]
            if g and t:
                some = (
                    "" if (len(g), len(t)) == (len(gohsp), len(tp)) else f" (the {len(g)} and {len(t)} runs with one)"
                )
                line += (
                    f"; against their dense control trained as long{some}: GOHSP {statistics.mean(g):+.2f}, "
                    f"Torch-Pruning {statistics.mean(t):+.2f}"
                )
            lines.append(line)
    return lines


def dense_curve(r: dict) -> list[str]:
    """The learning curve of a dense result, at five epochs."""
    curve = r["learning_curve"]
    marks = sorted({0, len(curve) // 4, len(curve) // 2, round(0.8 * len(curve)) - 1, len(curve) - 1})
    lines = [f"| {shape(r)}, epoch | " + " | ".join(f"{curve[i]['epoch']:g}" for i in marks) + " |",
             "|---|" + "---|" * len(marks),
             "| test accuracy, % | " + " | ".join(pct(curve[i]["accuracy"]) for i in marks) + " |"]  # fmt: skip
    lines.append(f"\nLast 20% of the epochs added {100 * r['last_20pct_gain']:+.2f} points.")
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--pooled"]:
        if not sys.argv[2:]:
            raise SystemExit(
                "--pooled needs one or more results folders, e.g. benchmarks/results/accuracy_mlp4_dense3."
            )
        print("\n".join(pooled([Path(folder) for folder in sys.argv[2:]])))
        return
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    results = load(folder)
    if not results:
        raise SystemExit(f"No results in {folder}: run benchmarks/accuracy.py first.")
    curves = [dense_curve(r) for r in results.values() if r["method"] == "dense"]
    sections = [("Dense references", [line for curve in curves for line in [*curve, ""]][:-1]),
                ("Dense controls", references(results)), ("Teachers", teachers(results))]  # fmt: skip
    sections += [(f"Accuracy at equal size: {name}", table(results, name)) for name in PASSES.values()]
    sections += [("Goals", goals(results))]
    sections += [(f"Ablations: {name}", ablation_table(results, prefix)) for prefix, name in PASSES.items()]
    for title, lines in sections:
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
