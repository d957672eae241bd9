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

from .model_utils import ModelDims, base_model_prefix, block_modules, model_dims


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
# A residual-stream channel: one kept set for the whole model (beyond the paper; pruned only when asked for).
HIDDEN = GroupKind("hidden", "hidden", "hidden_size")
KINDS = {kind.name: kind for kind in GROUP_KINDS}
BLOCK_KINDS = tuple(KINDS)

# Each tensor of a block (name inside the block), and for each of its axes the kinds it is laid out over,
# outermost first. The residual-stream tensors (o_proj's and fc2's biases, the layer norms) belong to no group
# but the hidden channel.
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
    "attention.o_proj.bias": (("hidden",),),
    "mlp.fc2.bias": (("hidden",),),
    "layernorm_before.weight": (("hidden",),),
    "layernorm_before.bias": (("hidden",),),
    "layernorm_after.weight": (("hidden",),),
    "layernorm_after.bias": (("hidden",),),
}
# The tensors outside the blocks that carry the residual stream (names under the encoder, `vit.` or `deit.`, and
# the classifier heads at the top); `()` marks an axis no group owns.
ENCODER_TENSORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "embeddings.cls_token": ((), (), ("hidden",)),
    "embeddings.distillation_token": ((), (), ("hidden",)),
    "embeddings.position_embeddings": ((), (), ("hidden",)),
    "embeddings.patch_embeddings.projection.weight": (("hidden",), (), (), ()),
    "embeddings.patch_embeddings.projection.bias": (("hidden",),),
    "layernorm.weight": (("hidden",),),
    "layernorm.bias": (("hidden",),),
}
CLASSIFIER_TENSORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "classifier.weight": ((), ("hidden",)),
    "cls_classifier.weight": ((), ("hidden",)),
    "distillation_classifier.weight": ((), ("hidden",)),
}


def dense_size(dims: ModelDims, kind: str) -> int:
    """How many groups of `kind` a dense block (or, for `hidden`, the dense model) has."""
    return getattr(dims, (KINDS.get(kind) or HIDDEN).size)


def touches(axes: tuple[tuple[str, ...], ...], kinds) -> bool:
    """Whether a tensor with these axes loses elements when groups of `kinds` go."""
    return any(kind in kinds for axis in axes for kind in axis)


def block_tensors(qkv_bias: bool = True, kinds=BLOCK_KINDS) -> dict[str, tuple[tuple[str, ...], ...]]:
    """The tensors of a block that pruning `kinds` touches, for a model with or without q/k/v biases."""
    return {
        name: axes
        for name, axes in BLOCK_TENSORS.items()
        if (qkv_bias or not name.endswith("_proj.bias")) and touches(axes, kinds)
    }


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
        if not kinds or not all(kind in masks for kind in kinds):
            continue
        shape = [1] * len(axes)
        shape[axis] = -1
        mask = flat_mask(kinds, masks).view(shape)
        result = mask if result is None else result * mask
    return result


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
    tensors: dict[str, torch.Tensor], table: dict[str, tuple], dims: ModelDims, kinds=BLOCK_KINDS
) -> dict[tuple[str, ...], torch.Tensor]:
    """Per-element importance summed onto each pruned axis layout, e.g. `("head", "qk") -> (H, d_h)`.

    Args:
        tensors: per-element importance of one block's prunable tensors (e.g. `w ** 2`), by name inside the block.
        table: the block's tensor table (`block_tensors`).
        dims: the dense sizes.

    Returns:
        For every axis layout made of `kinds`, the importance summed over each tensor's other axes and over all
        tensors laid out on it, shaped by the kinds' dense sizes.
    """
    energy: dict[tuple[str, ...], torch.Tensor] = {}
    for name, axes in table.items():
        value = tensors[name].float()
        for axis, layout in enumerate(axes):
            if not layout or not all(kind in kinds for kind in layout):
                continue
            other = [a for a in range(value.dim()) if a != axis]
            summed = value.sum(other) if other else value
            summed = summed.view(*(dense_size(dims, kind) for kind in layout))
            energy[layout] = summed if layout not in energy else energy[layout] + summed
    return energy


def kind_scores(
    energy: dict[tuple[str, ...], torch.Tensor],
    keep: dict[str, torch.Tensor],
    kinds=("qk", "v", "mlp"),
    batch_axis: bool = False,
) -> dict[str, torch.Tensor]:
    """Score of every group of each kind: its axis energy summed over the kept groups of the other kinds it meets.

    A q/k dimension's score sums the `("head", "qk")` energy over the kept heads; a head's sums both attention
    layouts over the kept q/k and v dimensions. With `batch_axis`, every energy has a leading batch axis, kept.
    """
    scores, shift = {}, int(batch_axis)
    for kind in kinds:
        total = None
        for layout, value in energy.items():
            if kind not in layout:
                continue
            for axis, other in reversed(list(enumerate(layout))):
                if other != kind:
                    index = keep[other].nonzero().flatten().to(value.device)
                    value = value.index_select(axis + shift, index).sum(axis + shift)
            total = value if total is None else total + value
        scores[kind] = total
    return scores


class Layout:
    """The group table applied to one model: every tensor that pruning the enabled kinds touches, by full name.

    Args:
        dims: the dense sizes.
        qkv_bias: whether q/k/v have biases.
        hidden: whether residual-stream channels are pruned too (then the layer norms, embeddings and
            classifier(s) are part of the layout).
        outer: full name -> `(axes, shape)` of the tensors outside the blocks (needed with `hidden`).
        prefixes: the blocks' name prefixes (`"vit.layers.0"`...), needed to address real tensors.
    """

    def __init__(self, dims: ModelDims, qkv_bias=True, hidden=False, outer=None, prefixes=None):
        self.dims, self.hidden, self.prefixes = dims, hidden, prefixes
        self.kinds = BLOCK_KINDS + (("hidden",) if hidden else ())
        self.block_table = block_tensors(qkv_bias, self.kinds)
        self.outer = dict(outer or {}) if hidden else {}

    @classmethod
    def from_model(cls, model: nn.Module, hidden: bool = False) -> Layout:
        base = base_model_prefix(model)
        shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
        tables = ({f"{base}.{name}": axes for name, axes in ENCODER_TENSORS.items()}, CLASSIFIER_TENSORS)
        outer = {name: (axes, shapes[name]) for table in tables for name, axes in table.items() if name in shapes}
        prefixes = [prefix for prefix, _ in block_modules(model)]
        return cls(model_dims(model), model.config.qkv_bias, hidden, outer, prefixes)

    # -- addressing real tensors ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Full names of the layout's tensors: every block's, then those outside the blocks."""
        return [f"{prefix}.{name}" for prefix in self.prefixes for name in self.block_table] + list(self.outer)

    def parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The model's tensors of this layout (q/k/v biases only where the model has them)."""
        params = dict(model.named_parameters())
        return {name: params[name] for name in self.names() if name in params}

    def block_view(self, tensors: dict[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
        """`tensors` (by full name) of block `layer`, by name inside the block."""
        prefix = self.prefixes[layer]
        return {name: tensors[f"{prefix}.{name}"] for name in self.block_table if f"{prefix}.{name}" in tensors}

    def axes(self, name: str) -> tuple[tuple[str, ...], ...]:
        """The axes of a tensor of the layout, by full name."""
        if name in self.outer:
            return self.outer[name][0]
        return self.block_table[name.split(".", 3)[-1]]  # "<encoder>.layers.<i>.<name inside the block>"

    def block_index(self, name: str) -> int | None:
        """The block a tensor of the layout belongs to, or None for those outside the blocks."""
        return None if name in self.outer else self.prefixes.index(".".join(name.split(".")[:3]))

    # -- counting --------------------------------------------------------------------------------------------------
    def block_sizes(self, block: dict[str, int], hidden: int | None = None) -> dict[str, int]:
        """A block's kept counts by kind, with the residual width (`hidden`, default dense)."""
        return {"hidden": self.dims.hidden_size if hidden is None else hidden, **block}

    def kept_parameters(self, blocks: list[dict[str, int]], hidden: int | None = None) -> int:
        """Elements of the layout's tensors when the blocks keep `blocks` (kind -> count) and `hidden` channels."""
        inner = sum(parameter_count(self.block_table, self.block_sizes(block, hidden)) for block in blocks)
        return inner + sum(self._outer_numel(axes, shape, hidden, None) for axes, shape in self.outer.values())

    def unit_costs(self, block: dict[str, int], hidden: int | None = None) -> dict[str, int]:
        """Parameters removed with one group of each block kind, in a block that keeps `block`."""
        return unit_costs(self.block_table, self.block_sizes(block, hidden), BLOCK_KINDS)

    def hidden_cost(self, blocks: list[dict[str, int]], hidden: int) -> int:
        """Parameters removed with one residual channel, when the blocks keep `blocks` and `hidden` channels."""
        inner = sum(unit_costs(self.block_table, self.block_sizes(b, hidden), ("hidden",))["hidden"] for b in blocks)
        return inner + sum(self._outer_numel(axes, shape, hidden, "hidden") for axes, shape in self.outer.values())

    @staticmethod
    def _outer_numel(axes, shape, hidden, without) -> int:
        """Elements of an outer tensor with `hidden` kept channels; with `without="hidden"`, those of one channel."""
        return math.prod(
            1 if axis == (without,) else (hidden if axis == ("hidden",) and hidden is not None else size)
            for axis, size in zip(axes, shape)
        )

    # -- scores --------------------------------------------------------------------------------------------------
    def hidden_energy(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-element importance (by full name) summed onto the residual channels, or None without `hidden`."""
        if not self.hidden:
            return None
        total = None
        for name, value in tensors.items():
            axes = self.axes(name)
            if ("hidden",) in axes:
                other = [a for a in range(value.dim()) if a != axes.index(("hidden",))]
                summed = value.float().sum(other) if other else value.float()
                total = summed if total is None else total + summed
        return total


def prunable_parameters(model: nn.Module, hidden: bool = False) -> dict[str, nn.Parameter]:
    """The tensors that structured pruning touches in every block (and, with `hidden`, outside them)."""
    return Layout.from_model(model, hidden).parameters(model)
