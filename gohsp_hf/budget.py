"""Turn a parameter budget into per-block group counts (docs/method.md, "Budget").

`target_sparsity` is the fraction of the whole model's parameters to remove. Heads are fixed first (by the
head mask of stage 1); the rest of the budget goes to attention columns and MLP neurons ranked globally
across blocks, each group's score divided by the number of parameters it holds, so that a cheap MLP neuron
and an expensive q/k column compete fairly.
"""

from __future__ import annotations

import copy
import math

import torch

from .groups import GROUP_KINDS, KINDS, Layout, dense_size
from .model_utils import ModelDims, model_dims
from .structure import LayerStructure, PrunedStructure

COLUMN_KINDS = ("qk", "v", "mlp")  # the kinds `solve` allocates once the heads are fixed


def kind_sizes(structure: PrunedStructure) -> list[dict[str, int]]:
    """Per block, the kept count of every group kind, by kind name (`{"head": 3, "qk": 16, ...}`)."""
    return [{kind.name: len(getattr(layer, kind.field)) for kind in GROUP_KINDS} for layer in structure.layers]


def dense_sizes(dims: ModelDims) -> list[dict[str, int]]:
    return [{kind: dense_size(dims, kind) for kind in KINDS} for _ in range(dims.num_layers)]


class UnreachableSparsityError(ValueError):
    """`target_sparsity` cannot be reached with the minimum sizes, floors or head counts asked for."""


class BudgetSolver:
    """Chooses the kept groups of every block so that the model loses `target_sparsity` of its parameters.

    Args:
        dims: dense sizes of the model.
        total_parameters: all parameters of the dense model (embeddings and classifier included).
        target_sparsity: fraction of `total_parameters` to remove, in (0, 1).
        qkv_bias: whether q/k/v have biases (they are removed with their rows).
        min_mlp_width: the smallest MLP width a block may keep.
        round_to: keep q/k, v, MLP (and residual) sizes at multiples of this (the last chunk of a dimension may
            be shorter).
        layout: the model's group table (`groups.Layout`); by default the blocks' tensors, residual width kept.

    Example:

    ```python
    >>> import torch
    >>> from gohsp_hf.budget import BudgetSolver
    >>> from gohsp_hf.model_utils import ModelDims
    >>> dims = ModelDims(hidden_size=64, num_layers=2, num_heads=4, head_dim=16, intermediate_size=256)
    >>> solver = BudgetSolver(dims, total_parameters=150_000, target_sparsity=0.4)
    >>> scores = [{"qk": torch.rand(16), "v": torch.rand(16), "mlp": torch.rand(256)} for _ in range(2)]
    >>> structure = solver.solve(scores, torch.ones(2, 4, dtype=torch.bool))
    >>> abs(solver.sparsity(structure) - 0.4) < 0.005
    True
    ```
    """

    def __init__(
        self,
        dims: ModelDims,
        total_parameters: int,
        target_sparsity: float,
        qkv_bias: bool = True,
        min_mlp_width: int = 1,
        round_to: int = 1,
        layout: Layout | None = None,
    ):
        if not 0 < target_sparsity < 1 or math.isnan(target_sparsity):
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}.")
        if round_to < 1 or min_mlp_width < 1:
            raise ValueError(f"round_to and min_mlp_width must be >= 1, got {round_to} and {min_mlp_width}.")
        self.dims, self.total, self.target = dims, int(total_parameters), float(target_sparsity)
        self.qkv_bias, self.round_to = qkv_bias, round_to
        self.min_mlp = min(dims.intermediate_size, max(min_mlp_width, round_to))
        self.layout = layout or Layout(dims, qkv_bias)
        self.min_hidden = min(round_to, dims.hidden_size) if self.layout.hidden else dims.hidden_size
        self.fixed = self.total - self.parameters_kept(dense_sizes(dims))
        # What the prunable tensors may keep, in parameters.
        self.budget = self.total * (1 - self.target) - self.fixed

    @classmethod
    def from_model(
        cls, model, target_sparsity: float, min_mlp_width: int = 1, round_to: int = 1, hidden: bool = False
    ) -> BudgetSolver:
        """A solver for a supported dense ViT/DeiT: its sizes, parameter count and q/k/v bias setting; with
        `hidden`, residual-stream channels are groups too."""
        return cls(
            model_dims(model),
            sum(p.numel() for p in model.parameters()),
            target_sparsity,
            qkv_bias=model.config.qkv_bias,
            min_mlp_width=min_mlp_width,
            round_to=round_to,
            layout=Layout.from_model(model, hidden),
        )

    def at(self, target_sparsity: float) -> BudgetSolver:
        """The same solver for another target (e.g. an intermediate one of a gradual schedule)."""
        solver = copy.copy(self)
        solver.target = float(target_sparsity)
        solver.budget = self.total * (1 - solver.target) - self.fixed
        return solver

    def parameters_kept(self, sizes: list[dict[str, int]], hidden: int | None = None) -> int:
        """Parameters held by the layout's tensors when blocks keep `sizes` (kind name -> count) and `hidden`
        residual channels (default: all)."""
        return self.layout.kept_parameters(sizes, hidden)

    def unit_costs(self, block: dict[str, int], hidden: int | None = None) -> dict[str, int]:
        """Parameters removed with one group of each kind in a block that keeps `block` (kind name -> count)."""
        return self.layout.unit_costs(block, hidden)

    def sparsity(self, structure: PrunedStructure) -> float:
        """Fraction of the dense model's parameters removed by `structure`."""
        kept = self.parameters_kept(kind_sizes(structure), structure.hidden_size)
        return 1 - (self.fixed + kept) / self.total

    def minimum_sizes(self, head_counts: list[int]) -> list[dict[str, int]]:
        g = min(self.round_to, self.dims.head_dim)
        return [{"head": h, "qk": g, "v": g, "mlp": self.min_mlp} for h in head_counts]

    def check_feasible(self, head_counts: list[int] | None = None) -> None:
        """Raise an `UnreachableSparsityError` (a `ValueError`) when the target cannot be met with these head counts
        (default: one per block)."""
        heads = head_counts or [1] * self.dims.num_layers
        smallest = self.fixed + self.parameters_kept(self.minimum_sizes(heads), self.min_hidden)
        if smallest > self.total * (1 - self.target):
            reachable = 1 - smallest / self.total
            raise UnreachableSparsityError(
                f"target_sparsity {self.target:.3f} cannot be reached: keeping {heads} heads per block and the minimum "
                f"sizes (q/k and v size {self.minimum_sizes(heads)[0]['qk']}, MLP width {self.min_mlp}) removes "
                f"at most {reachable:.3f} of the parameters. Lower target_sparsity, head_sparsity or min_mlp_width."
            )

    def solve(self, scores: list[dict[str, torch.Tensor]], head_mask: torch.Tensor) -> PrunedStructure:
        """Keep the heads of `head_mask` and the best groups by score per parameter, within the budget.

        Args:
            scores: per block, importance of each q/k dimension (`"qk"`, (d_h,)), v dimension (`"v"`, (d_h,)) and
                MLP neuron (`"mlp"`, (I,)); larger is more important.
            head_mask: (layers, heads) booleans, True for kept heads.

        Returns:
            The `PrunedStructure`. Raises a `ValueError` when the budget cannot be met.
        """
        full = self._sizes_with_heads(head_mask)
        orders = [
            {k: torch.argsort(s[k].double(), descending=True, stable=True) for k in COLUMN_KINDS} for s in scores
        ]
        counts = self.minimum_sizes([size["head"] for size in full])
        used = self.parameters_kept(counts)
        chunks = self._chunks(scores, orders, counts, full)
        filled = dict.fromkeys(((layer, kind) for layer in range(len(scores)) for kind in COLUMN_KINDS), True)
        for _, layer, kind, start, size, cost in chunks:
            if filled[layer, kind] and start == counts[layer][kind] and used + cost <= self.budget:
                counts[layer][kind] += size
                used += cost
            else:
                filled[layer, kind] = False  # keep the kept groups a prefix of the ranking
        layers = [
            LayerStructure(
                head_mask[layer].nonzero().flatten().tolist(), *(order[k][: count[k]].tolist() for k in COLUMN_KINDS)
            )
            for layer, (order, count) in enumerate(zip(orders, counts))
        ]
        structure = PrunedStructure(self.dims, layers)
        structure.validate()
        return structure

    def _sizes_with_heads(self, head_mask: torch.Tensor) -> list[dict[str, int]]:
        """Dense sizes with the heads of `head_mask`, checked against the budget."""
        head_counts = [int(n) for n in head_mask.sum(1)]
        self.check_feasible(head_counts)
        full = [{**size, "head": h} for size, h in zip(dense_sizes(self.dims), head_counts)]
        if self.parameters_kept(full) < self.budget - 0.005 * self.total:
            raise ValueError(
                f"The head mask alone removes more than target_sparsity {self.target:.3f} of the parameters "
                f"(it keeps {head_counts} heads per block); prune fewer heads (lower head_sparsity)."
            )
        return full

    def _chunks(self, scores, orders, minimum, full) -> list[tuple]:
        """Every `round_to` chunk of groups above the minimum sizes, best score per parameter first:
        `(value, layer, kind, start, size, cost)`. Chunks of one (block, kind) come out in order: their scores are
        sorted and, with the heads fixed, their costs equal."""
        chunks = []
        for layer, (block_scores, order) in enumerate(zip(scores, orders)):
            costs = self.unit_costs(full[layer])
            for kind in COLUMN_KINDS:
                ranked = block_scores[kind].double()[order[kind]]
                for start in range(minimum[layer][kind], ranked.numel(), self.round_to):
                    size = min(self.round_to, ranked.numel() - start)
                    value = ranked[start : start + size].sum().item() / (size * costs[kind])
                    chunks.append((value, layer, kind, start, size, size * costs[kind]))
        return sorted(chunks, key=lambda c: (-c[0], c[1], COLUMN_KINDS.index(c[2]), c[3]))
