"""Speed race on CPU: dense, GOHSP's export and Torch-Pruning's model at the same parameter count.

A ViT with DeiT-Small's sizes (hidden 384, 12 blocks, 6 heads, MLP 1536, 224px, 16px patches, 1000 classes;
random weights: speed does not depend on them). GOHSP's structure comes from its default path (Fisher scores on
calibration batches, residual channels cut first, one allocation over heads, q/k, v and MLP, rescored in
`importance_steps` steps), with `round_to` 8 (the default; also exported without padding q/k and v to one head
size before SDPA, and with plain LayerNorms) and 1. Torch-Pruning prunes
the same dense model (benchmarks/accuracy.py's recipe) with its ratio bisected to GOHSP's parameter count.
Every model runs in eager PyTorch, with `torch.compile`, and in ONNX Runtime; in each, all models take turns
inside every repeat on the same images, and the median is kept.

    python benchmarks/speed_race.py                   # -> results/speed_race.json
    python benchmarks/speed_race.py --profile         # also the per-operator profile of dense and GOHSP 50%
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
from speed import machine, time_functions
from transformers import ViTConfig, ViTForImageClassification

from gohsp_hf import BudgetSolver, GOHSPConfig, apply_masks, export_pruned_model, model_cost
from gohsp_hf.allocation import Allocation
from gohsp_hf.importance import data_importance
from gohsp_hf.onnx_export import export_onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import count_parameters, tp_prune  # noqa: E402

DEIT_SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                  image_size=224, patch_size=16, num_labels=1000)  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results" / "speed_race.json"


def calibration(steps: int, batch_size: int = 8) -> list[list[dict]]:
    """`steps` windows of one batch of random images and labels (the structure's shape is what is timed)."""
    generator = torch.Generator().manual_seed(0)
    return [[{"pixel_values": torch.randn(batch_size, 3, 224, 224, generator=generator),
              "labels": torch.randint(0, 1000, (batch_size,), generator=generator)}] for _ in range(steps)]  # fmt: skip


def gohsp_structure(dense, target: float, round_to: int, batches):
    """GOHSP's default allocation, as `GOHSP.select` runs it: `importance` scores from `GOHSPConfig`'s defaults,
    residual channels cut by `1 - sqrt(1 - target)` first, `importance_steps` rescored allocations."""
    defaults = GOHSPConfig(output_dir=tempfile.gettempdir())
    solver = BudgetSolver.from_model(dense, target, round_to=round_to, hidden=defaults.prune_hidden_size)
    hidden = 1 - math.sqrt(1 - target)
    structure, steps = None, len(batches)
    for step in range(1, steps + 1):
        model = dense if structure is None else apply_masks(copy.deepcopy(dense), structure)
        importance = data_importance(model, batches[step - 1], solver.layout, defaults.importance)
        fraction = target * step / steps
        structure = Allocation(solver.at(fraction), importance, hidden_sparsity=hidden * fraction / target).run()
    return structure, solver


def tp_model(dense, params: int, seed: int = 0):
    """Torch-Pruning's model whose parameter count is the closest to `params`."""
    train = [{"pixel_values": b["pixel_values"][i], "labels": b["labels"][i]}
             for window in calibration(2, 32) for b in window for i in range(32)]  # fmt: skip
    low, high, sizes = 0.0, 0.95, {}
    for _ in range(8):
        ratio = (low + high) / 2
        sizes[ratio] = count_parameters(tp_prune(copy.deepcopy(dense), ratio, train, 2, seed))
        low, high = (ratio, high) if sizes[ratio] > params else (low, ratio)
    ratio = min(sizes, key=lambda r: abs(sizes[r] - params))
    return tp_prune(copy.deepcopy(dense), ratio, train, 2, seed).eval(), ratio


def onnx_function(model, folder: Path, name: str):
    import onnxruntime

    path = folder / f"{name.replace(' ', '_').replace('%', 'pct')}.onnx"
    export_onnx(model, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"pixel_values": x.numpy()})


def profile(models: dict, batch_size: int, rows: int = 12) -> dict:
    """Per-operator CPU time table (torch.profiler) of one forward of each model."""
    x = torch.randn(batch_size, 3, 224, 224)
    tables = {}
    with torch.inference_mode():
        for name, model in models.items():
            model(pixel_values=x)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    model(pixel_values=x)
            tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
            print(f"--- {name}, batch {batch_size}, 3 forwards\n{tables[name]}", flush=True)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--backends", nargs="+", default=["eager", "compile", "onnxruntime"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    dense = ViTForImageClassification(ViTConfig(**DEIT_SMALL)).eval()
    steps = GOHSPConfig(output_dir=tempfile.gettempdir()).importance_steps
    models, info = {"dense": dense}, {"dense": {**model_cost(dense), "structure": None}}
    pct = round(100 * args.target)
    for round_to in (8, 1):  # 8: the default
        structure, solver = gohsp_structure(dense, args.target, round_to, calibration(steps))
        masked = apply_masks(copy.deepcopy(dense), structure)
        name = f"gohsp {pct}% round_to={round_to}"
        models[name] = export_pruned_model(masked, structure).eval()
        info[name] = {**model_cost(models[name]), "structure": structure.sizes(),
                      "hidden_size": models[name].config.hidden_size}  # fmt: skip
        if round_to != 8:
            continue
        unpadded = copy.deepcopy(models[name])  # q/k and v at their own head sizes: SDPA's math path
        unpadded.config.pad_head_dims = False
        models[name + " unpadded"], info[name + " unpadded"] = unpadded, {**info[name], "pad_head_dims": False}
        plain = export_pruned_model(masked, structure, layer_norm="plain").eval()  # torch's fused LayerNorm
        models[name + " plain LayerNorm"], info[name + " plain LayerNorm"] = plain, dict(info[name])
    tp, ratio = tp_model(dense, info[f"gohsp {pct}% round_to=8"]["params"])
    models[f"torch_pruning {pct}%"] = tp
    info[f"torch_pruning {pct}%"] = {**model_cost(tp), "tp_pruning_ratio": ratio,
                                     "hidden_size": tp.vit.layers[0].attention.q_proj.in_features}  # fmt: skip
    base = info["dense"]["flops"]
    for cost in info.values():
        cost["ideal_speedup"] = base / cost["flops"]

    results = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "machine": machine(),
               "shape": "deit-small (ViT)", "target": args.target, "models": info, "timings": {}}  # fmt: skip
    if args.profile:
        default = f"gohsp {pct}% round_to=8"
        results["profile_batch32"] = profile({n: models[n] for n in ("dense", default, default + " unpadded")}, 32)
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            if backend in ("eager", "compile"):
                runners = {n: torch.compile(m) if backend == "compile" else m for n, m in models.items()}
                functions = {n: (lambda x, m=m: m(pixel_values=x)) for n, m in runners.items()}
            else:
                functions = {n: onnx_function(m, Path(tmp), n) for n, m in models.items()}
            timings = time_functions(functions, dense.config, args.batch_sizes, args.repeats)
            results["timings"][backend] = timings
            for name in models:
                speedups = {
                    b: timings["dense"][b]["median_s"] / timings[name][b]["median_s"] for b in args.batch_sizes
                }
                info[name].setdefault("speedup", {})[backend] = {str(b): s for b, s in speedups.items()}
                print(f"{backend:11s} {name:30s} ideal {info[name]['ideal_speedup']:.2f}x  " +
                      "  ".join(f"b{b}: {s:.2f}x" for b, s in speedups.items()), flush=True)  # fmt: skip
            tmp_out = args.output.with_suffix(".json.tmp")  # written after every backend: a partial race survives
            tmp_out.write_text(json.dumps(results, indent=1))
            os.replace(tmp_out, args.output)


if __name__ == "__main__":
    main()
