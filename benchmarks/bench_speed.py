"""Real CPU speed of exported pruned models against dense, next to the FLOPs ratio (the ideal).

DeiT-Small-shaped models (facebook/deit-small-patch16-224 sizes, random weights) pruned to 35% and 50% of their
parameters by the budget solver (heads by weight norm, `head_sparsity = target / 2`, groups by norm per
parameter, as GOHSP's projection does), with `round_to` 1 and 8. All models are timed in turn inside each repeat.
With `--fashion_mnist DIR` the dense and pruned models of the README's main command are timed too.

    python benchmarks/bench_speed.py                  # writes benchmarks/results/speed.json
    python benchmarks/plots.py                        # draws benchmarks/plots/speedup_vs_batch.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from speed import machine, time_models
from transformers import AutoModelForImageClassification, DeiTConfig, DeiTForImageClassification

from gohsp_hf import BudgetSolver, apply_masks, export_pruned_model, model_cost
from gohsp_hf.admm import group_scores
from gohsp_hf.baselines import magnitude_head_mask
from gohsp_hf.groups import prunable_parameters

DEIT_SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                  image_size=224, patch_size=16, num_labels=1000)  # fmt: skip


def solver_structure(dense, target: float, round_to: int):
    solver = BudgetSolver.from_model(dense, target, round_to=round_to)
    dims = solver.dims
    head_mask = magnitude_head_mask(dense, round(target / 2 * dims.num_layers * dims.num_heads))
    weights = {name: p.detach() for name, p in prunable_parameters(dense).items()}
    return solver.solve(group_scores(weights, dense, head_mask), head_mask), solver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.35, 0.5])
    parser.add_argument("--fashion_mnist", type=Path, help="output_dir of the README's main command")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    dense = DeiTForImageClassification(DeiTConfig(**DEIT_SMALL)).eval()
    models, info = {"dense": dense}, {"dense": {**model_cost(dense), "structure": None}}
    for target in args.targets:
        for round_to in (1, 8):
            structure, solver = solver_structure(dense, target, round_to)
            name = f"{round(target * 100)}% round_to={round_to}"
            pruned = export_pruned_model(apply_masks(dense, structure), structure).eval()
            models[name] = pruned
            info[name] = {**model_cost(pruned), "sparsity": solver.sparsity(structure), "structure": structure.sizes()}
    results = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "deit_small": {"models": info, "timings": time_models(models, args.batch_sizes, args.repeats)},
    }
    if args.fashion_mnist:
        small = {
            "dense": AutoModelForImageClassification.from_pretrained(args.fashion_mnist / "dense").eval(),
            "gohsp 50%": AutoModelForImageClassification.from_pretrained(args.fashion_mnist).eval(),
        }
        results["fashion_mnist"] = {
            "models": {name: model_cost(model) for name, model in small.items()},
            "timings": time_models(small, args.batch_sizes, args.repeats * 3),
        }
    for family in [k for k in ("deit_small", "fashion_mnist") if k in results]:
        block = results[family]
        base = block["models"]["dense"]
        for name, cost in block["models"].items():
            cost["flops_ratio"] = cost["flops"] / base["flops"]
            cost["ideal_speedup"] = base["flops"] / cost["flops"]
            cost["speedup"] = {
                str(b): block["timings"]["dense"][b]["median_s"] / block["timings"][name][b]["median_s"]
                for b in args.batch_sizes
            }
            print(f"{family:13s} {name:18s} params {cost['params'] / 1e6:6.2f}M  FLOPs ratio {cost['flops_ratio']:.3f} "
                  f"(ideal {cost['ideal_speedup']:.2f}x)  speedup " +
                  "  ".join(f"b{b}: {cost['speedup'][str(b)]:.2f}x" for b in args.batch_sizes))  # fmt: skip
    Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
