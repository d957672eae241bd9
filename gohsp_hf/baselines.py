"""Baselines on the same groups, budget solver and export as GOHSP (docs/method.md, "Baselines").

- SOMP, structured one-shot magnitude pruning: heads and groups by weight norm, pruned once at the start.
- SGMP, structured gradual magnitude pruning: the same criterion on the cubic schedule of Zhu & Gupta (2018)
  over the pruning stage.
- Random heads and groups, as a floor.
"""

from __future__ import annotations

import torch
from torch import nn

from .groups import axis_energy, block_tensors, dense_size, kind_scores, prunable_parameters
from .head_ranking import select_heads
from .model_utils import ModelDims, block_modules, model_dims


@torch.no_grad()
def head_weight_norms(model: nn.Module) -> torch.Tensor:
    """(layers, heads) squared norm of each head's q/k/v rows (with biases) and o_proj columns."""
    d, table = model_dims(model), block_tensors(model.config.qkv_bias)
    params = prunable_parameters(model)
    norms = []
    for prefix, _ in block_modules(model):
        squares = {name: params[f"{prefix}.{name}"].detach().float().pow(2) for name in table}
        keep = {kind: torch.ones(dense_size(d, kind), dtype=torch.bool) for kind in ("qk", "v")}
        norms.append(kind_scores(axis_energy(squares, table, d), keep, kinds=("head",))["head"].cpu())
    return torch.stack(norms)


def magnitude_head_mask(model: nn.Module, num_pruned: int, scope: str = "per_block") -> torch.Tensor:
    """Drop the heads with the smallest weight norm."""
    return select_heads(head_weight_norms(model), num_pruned, scope)


def random_head_mask(dims: ModelDims, num_pruned: int, seed: int, scope: str = "per_block") -> torch.Tensor:
    """Drop random heads (the same on every process for the same seed)."""
    generator = torch.Generator().manual_seed(seed)
    return select_heads(torch.rand(dims.num_layers, dims.num_heads, generator=generator), num_pruned, scope)


def random_group_scores(dims: ModelDims, seed: int) -> list[dict[str, torch.Tensor]]:
    """Random scores for every q/k column, v column and MLP neuron."""
    generator = torch.Generator().manual_seed(seed + 1)
    return [
        {
            "qk": torch.rand(dims.head_dim, generator=generator),
            "v": torch.rand(dims.head_dim, generator=generator),
            "mlp": torch.rand(dims.intermediate_size, generator=generator),
        }
        for _ in range(dims.num_layers)
    ]


def cubic_sparsity(step: int, total_steps: int, final_sparsity: float) -> float:
    """Zhu & Gupta's schedule: `s_t = s_f * (1 - (1 - t / T)^3)`, reaching `s_f` at `t = T`."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final_sparsity * (1 - (1 - progress) ** 3)
