"""Baselines on the same groups, budget solver and export as GOHSP (GOHSP_SPEC "Baselines").

- SOMP, structured one-shot magnitude pruning: heads and groups by weight norm, pruned once at the start.
- SGMP, structured gradual magnitude pruning: the same criterion on the cubic schedule of Zhu & Gupta (2018)
  over the pruning stage.
- Random heads and groups, as a floor.
"""

from __future__ import annotations

import torch
from torch import nn

from .admm import prunable_parameters
from .head_ranking import select_heads
from .model_utils import ModelDims, block_modules, model_dims

METHODS = ("gohsp", "somp", "sgmp", "random")


@torch.no_grad()
def head_weight_norms(model: nn.Module) -> torch.Tensor:
    """(layers, heads) squared norm of each head's q/k/v rows (with biases) and o_proj columns."""
    d = model_dims(model)
    params = {name: p.detach().float() for name, p in prunable_parameters(model).items()}
    norms = []
    for prefix, _ in block_modules(model):
        energy = torch.zeros(d.num_heads)
        for proj in ("q_proj", "k_proj", "v_proj"):
            energy += params[f"{prefix}.attention.{proj}.weight"].pow(2).view(d.num_heads, -1).sum(1).cpu()
            bias = params.get(f"{prefix}.attention.{proj}.bias")
            if bias is not None:
                energy += bias.pow(2).view(d.num_heads, -1).sum(1).cpu()
        out = params[f"{prefix}.attention.o_proj.weight"].pow(2).view(d.hidden_size, d.num_heads, -1)
        norms.append(energy + out.sum((0, 2)).cpu())
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
