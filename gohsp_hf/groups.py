"""The prunable groups of a ViT/DeiT block, described once, as data.

A *group kind* is a kind of structure removed as a unit: a head, a query/key dimension (shared by every head of
its block), a value dimension, an MLP neuron. Every prunable tensor of a block is laid out, along each of its
axes, over the product of some kinds: the rows of `q_proj` are `(head, qk)` in row-major order
(row `h * head_dim + j`), the columns of `o_proj` are `(head, v)`, the rows of `fc1` are `mlp`. `BLOCK_TENSORS`
says which, and the rest of the package reads it:

- the masks of the masked model (`structure.block_parameter_masks`),
- the slicing of the hard prune (`export`),
- the group scores of the projection (`admm.group_scores`, `importance`),
- parameter counts and the cost of one group, for the budget (`budget`).

A new kind of group is a new `GroupKind` and new entries in the table, not a new branch in each of those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .model_utils import ModelDims, block_modules


@dataclass(frozen=True)
class GroupKind:
    """A kind of prunable group.

    Args:
        name: its key in masks, scores and the tensor table (`"head"`, `"qk"`, `"v"`, `"mlp"`).
        field: the `LayerStructure` attribute that lists the kept groups of a block.
        size: the `ModelDims` attribute that gives how many a dense block has.
    """

    name: str
    field: str
    size: str


GROUP_KINDS = (
    GroupKind("head", "heads", "num_heads"),
    GroupKind("qk", "qk_dims", "head_dim"),
    GroupKind("v", "v_dims", "head_dim"),
    GroupKind("mlp", "mlp", "intermediate_size"),
)
KINDS = {kind.name: kind for kind in GROUP_KINDS}

# Axes never pruned here: the residual stream ("hidden").
FIXED_AXES = {"hidden": "hidden_size"}

# Each prunable tensor of a block (name inside the block), and for each of its axes the kinds it is laid out over,
# outermost first. o_proj's and fc2's biases live in the residual stream only, so no group owns them.
BLOCK_TENSORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "attention.q_proj.weight": (("head", "qk"), ("hidden",)),
    "attention.q_proj.bias": (("head", "qk"),),
    "attention.k_proj.weight": (("head", "qk"), ("hidden",)),
    "attention.k_proj.bias": (("head", "qk"),),
    "attention.v_proj.weight": (("head", "v"), ("hidden",)),
    "attention.v_proj.bias": (("head", "v"),),
    "attention.o_proj.weight": (("hidden",), ("head", "v")),
    "mlp.fc1.weight": (("mlp",), ("hidden",)),
    "mlp.fc1.bias": (("mlp",),),
    "mlp.fc2.weight": (("hidden",), ("mlp",)),
}


def dense_size(dims: ModelDims, kind: str) -> int:
    """How many groups of `kind` (or how wide a fixed axis) a dense block has."""
    return getattr(dims, KINDS[kind].size if kind in KINDS else FIXED_AXES[kind])


def block_tensors(qkv_bias: bool = True) -> dict[str, tuple[tuple[str, ...], ...]]:
    """`BLOCK_TENSORS` for a model with or without q/k/v biases."""
    return {name: axes for name, axes in BLOCK_TENSORS.items() if qkv_bias or not name.endswith("_proj.bias")}


def flat_mask(kinds: tuple[str, ...], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mask of one axis laid out over `kinds`: the row-major outer product of their masks, flattened."""
    mask = masks[kinds[0]].float()
    for kind in kinds[1:]:
        mask = torch.outer(mask, masks[kind].float()).flatten()
    return mask


def flat_indices(kinds: tuple[str, ...], kept: dict[str, list[int]], sizes: dict[str, int]) -> torch.Tensor:
    """Indices along one axis laid out over `kinds` that survive when `kept[kind]` groups of each kind are kept."""
    index = torch.tensor([0])
    for kind in kinds:
        index = (index[:, None] * sizes[kind] + torch.tensor(kept[kind])[None, :]).flatten()
    return index


def tensor_mask(axes: tuple[tuple[str, ...], ...], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """A mask that broadcasts against a tensor with these axes; axes of kinds missing from `masks` are left whole."""
    result = None
    for axis, kinds in enumerate(axes):
        if not all(kind in masks for kind in kinds):
            continue
        shape = [1] * len(axes)
        shape[axis] = -1
        mask = flat_mask(kinds, masks).view(shape)
        result = mask if result is None else result * mask
    return result


def sizes_with_axes(dims: ModelDims, sizes: dict[str, int]) -> dict[str, int]:
    """A block's kept counts by kind name (`{"head": 3, "qk": 16, ...}`), plus the widths of the fixed axes."""
    return {**{axis: getattr(dims, attr) for axis, attr in FIXED_AXES.items()}, **sizes}


def parameter_count(tensors: dict[str, tuple], sizes: dict[str, int]) -> int:
    """Elements of a block's prunable tensors when it keeps `sizes[kind]` groups of each kind."""
    return sum(math.prod(sizes[kind] for axis in axes for kind in axis) for axes in tensors.values())


def unit_costs(tensors: dict[str, tuple], sizes: dict[str, int], kinds=tuple(KINDS)) -> dict[str, int]:
    """Parameters removed with one group of each kind, in a block that keeps `sizes` (kind -> count)."""
    return {
        kind: sum(
            math.prod(sizes[other] for axis in axes for other in axis if other != kind)
            for axes in tensors.values()
            if any(kind in axis for axis in axes)
        )
        for kind in kinds
    }


def axis_energy(
    tensors: dict[str, torch.Tensor], table: dict[str, tuple], dims: ModelDims
) -> dict[tuple[str, ...], torch.Tensor]:
    """Per-element importance summed onto each pruned axis layout, e.g. `("head", "qk") -> (H, d_h)`.

    Args:
        tensors: per-element importance of one block's prunable tensors (e.g. `w ** 2`), by name inside the block.
        table: the block's tensor table (`block_tensors`).
        dims: the dense sizes.

    Returns:
        For every axis layout made of group kinds, the importance summed over each tensor's other axes and over
        all tensors laid out on it, shaped by the kinds' dense sizes.
    """
    energy: dict[tuple[str, ...], torch.Tensor] = {}
    for name, axes in table.items():
        value = tensors[name].float()
        for axis, kinds in enumerate(axes):
            if not all(kind in KINDS for kind in kinds):
                continue
            other = [a for a in range(value.dim()) if a != axis]
            summed = value.sum(other) if other else value
            summed = summed.view(*(dense_size(dims, kind) for kind in kinds))
            energy[kinds] = summed if kinds not in energy else energy[kinds] + summed
    return energy


def kind_scores(
    energy: dict[tuple[str, ...], torch.Tensor], keep: dict[str, torch.Tensor], kinds=("qk", "v", "mlp")
) -> dict[str, torch.Tensor]:
    """Score of every group of each kind: its axis energy summed over the kept groups of the other kinds it meets.

    A q/k dimension's score sums the `("head", "qk")` energy over the kept heads; a head's sums both attention
    layouts over the kept q/k and v dimensions.
    """
    scores = {}
    for kind in kinds:
        total = None
        for layout, value in energy.items():
            if kind not in layout:
                continue
            for axis, other in reversed(list(enumerate(layout))):
                if other != kind:
                    value = value.index_select(axis, keep[other].nonzero().flatten().to(value.device)).sum(axis)
            total = value if total is None else total + value
        scores[kind] = total
    return scores


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors that structured pruning touches (those of `BLOCK_TENSORS` in every block), by full name."""
    return {
        f"{prefix}.{name}": param
        for prefix, block in block_modules(model)
        for name, param in block.named_parameters()
        if name in BLOCK_TENSORS
    }
