"""DeiT-Small-shaped model (random weights) pruned by a hand-made structure to about 50% of its parameters.

Reports parameters, FLOPs/MACs and CPU inference time (batch 1 and 32) of the dense and the exported model,
timed side by side. The structure is made by hand (no GOHSP): heads, q/k and v sizes and MLP widths differ
from block to block.

    python benchmarks/bench_export_deit_small.py            # writes benchmarks/results/export_deit_small.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from speed import machine, time_models
from transformers import DeiTConfig, DeiTForImageClassification

from gohsp_hf import PrunedStructure, apply_masks, export_pruned_model, model_cost

# facebook/deit-small-patch16-224
DEIT_SMALL = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    intermediate_size=1536,
    image_size=224,
    patch_size=16,
    num_labels=1000,
)


def hand_made_structure(model) -> PrunedStructure:
    """Keep 3-5 heads (first ones), 48 q/k and 64 v dims per head, and an MLP width that varies by block."""
    structure = PrunedStructure.from_model(model)
    heads = [5, 4, 4, 3, 4, 3, 3, 4, 3, 4, 4, 5]
    mlp = [832, 768, 704, 640, 640, 576, 576, 640, 640, 704, 768, 832]
    for layer, h, m in zip(structure.layers, heads, mlp):
        layer.heads, layer.qk_dims, layer.v_dims, layer.mlp = (
            list(range(h)),
            list(range(48)),
            list(range(64)),
            list(range(m)),
        )
    return structure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "export_deit_small.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    dense = DeiTForImageClassification(DeiTConfig(**DEIT_SMALL)).eval()
    structure = hand_made_structure(dense)
    pruned = export_pruned_model(apply_masks(dense, structure), structure).eval()
    costs = {"dense": model_cost(dense), "pruned": model_cost(pruned)}
    timings = time_models({"dense": dense, "pruned": pruned}, batch_sizes=(1, 32), repeats=args.repeats)

    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "model": "DeiTConfig with facebook/deit-small-patch16-224 sizes, random weights",
        "structure": structure.sizes(),
        "cost": costs,
        "parameter_sparsity": 1 - costs["pruned"]["params"] / costs["dense"]["params"],
        "flops_ratio": costs["pruned"]["flops"] / costs["dense"]["flops"],
        "timings": timings,
        "speedup": {b: timings["dense"][b]["median_s"] / timings["pruned"][b]["median_s"] for b in (1, 32)},
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(
        f"params  dense {costs['dense']['params'] / 1e6:.2f}M  pruned {costs['pruned']['params'] / 1e6:.2f}M "
        f"(sparsity {result['parameter_sparsity']:.1%})"
    )
    print(
        f"GFLOPs  dense {costs['dense']['flops'] / 1e9:.2f}  pruned {costs['pruned']['flops'] / 1e9:.2f} "
        f"(ratio {result['flops_ratio']:.3f})"
    )
    for b in (1, 32):
        print(
            f"batch {b:>2}: dense {timings['dense'][b]['median_s'] * 1e3:.1f} ms, pruned "
            f"{timings['pruned'][b]['median_s'] * 1e3:.1f} ms, speedup {result['speedup'][b]:.2f}x"
        )


if __name__ == "__main__":
    main()
