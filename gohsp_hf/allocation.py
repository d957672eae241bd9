"""One allocation of the parameter budget across every group kind: heads, q/k and v dimensions, MLP neurons and,
optionally, residual-stream channels (docs/method.md, "Budget and allocation").

Starting from the dense structure, groups are removed in rounds, least important per parameter first, until the
model has lost `target_sparsity` of its parameters. A group's importance is summed from the per-element energies
of `importance` over the groups still kept (a head's over its kept q/k and v dimensions, a q/k dimension's over
the kept heads), and its cost is the number of parameters it still holds; both are recomputed after every round,
so removing heads makes dimensions cheaper and the other way round. Heads compete on the same per-parameter scale
as every other group: the allocation decides how many each block keeps. Which head of a block goes next can be
given from outside (`head_order`, e.g. the graph ranking of stage 1).

`allocation="uniform"` is the comparison point (Torch-Pruning's default): every block keeps the same fraction of
each kind, the largest within the budget, and the scores only pick which groups of a block those are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .budget import BudgetSolver, UnreachableSparsityError
from .groups import BLOCK_KINDS, KINDS, dense_size
from .importance import GroupImportance
from .structure import LayerStructure, PrunedStructure

BLOCK_FLOOR_OF = ("dense", "uniform")
ALLOCATIONS = ("global", "uniform")


@dataclass
class Candidate:
    """A chunk of groups that may go next: `size` groups of `kind` in block `layer` (None: residual channels)."""

    value: float  # importance per parameter
    cost: int  # parameters it holds now
    layer: int | None
    kind: str
    indices: list[int]


class Allocation:
    """The state of one allocation: which groups every block (and the residual stream) keeps.

    Args:
        solver: the budget (target, minimum sizes, `round_to`, the group table).
        importance: the scores to rank groups by.
        head_order: per block, the heads in the order they may be removed (default: least important first).
        head_mask: fixed heads (True = kept); heads are then not part of the allocation.
        block_floor: every block keeps at least this fraction of its dense prunable parameters, or of its share
            under a uniform allocation at the target when `block_floor_of="uniform"`.
        block_floor_of: "dense" (the fraction is of the dense block) or "uniform" (of (1 - target) of it: a floor
            that scales with the target and leaves every target reachable for block_floor < 1).
        normalize_blocks: divide every block's values by the block's mean importance per parameter (over the groups
            it keeps; residual channels that compete, by theirs), so that blocks compete by how their groups rank
            inside them rather than by the scale of their scores; the allocation then stays closer to a uniform one.
        hidden_sparsity: with residual channels in the layout, remove this fraction of them first (least
            important first), then allocate the rest of the budget over the other kinds; None: channels compete
            in the allocation like every other group.
        allocation: "global" (groups compete across blocks and kinds per parameter: the structure is heterogeneous)
            or "uniform" (every block keeps the same fraction of its q/k and v dimensions, MLP neurons and, if they
            compete, residual channels; heads are all kept unless `head_mask` fixes them; floors and
            normalisation do not apply).
    """

    def __init__(
        self,
        solver: BudgetSolver,
        importance: GroupImportance,
        head_order: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        block_floor: float = 0.0,
        hidden_sparsity: float | None = None,
        normalize_blocks: bool = False,
        block_floor_of: str = "dense",
        allocation: str = "global",
    ):
        if block_floor_of not in BLOCK_FLOOR_OF:
            raise ValueError(f"block_floor_of must be one of {BLOCK_FLOOR_OF}, got {block_floor_of!r}.")
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}.")
        self.allocation = allocation
        dims = solver.dims
        self.solver, self.importance, self.head_order, self.block_floor = solver, importance, head_order, block_floor
        self.normalize_blocks, self.floor_name = normalize_blocks, f"block_floor {block_floor}"
        if block_floor_of == "uniform":
            self.block_floor = block_floor * (1 - solver.target)
            self.floor_name += f" of the uniform share ({self.block_floor:.3f} of every block)"
        self.keep = [
            {k: torch.ones(dense_size(dims, k), dtype=torch.bool) for k in BLOCK_KINDS} for _ in range(dims.num_layers)
        ]
        if head_mask is not None:
            for layer, keep in enumerate(self.keep):
                keep["head"] = head_mask[layer].clone().bool()
        self.kinds = [kind for kind in BLOCK_KINDS if kind != "head" or head_mask is None]
        self.hidden = torch.ones(dims.hidden_size, dtype=torch.bool) if solver.layout.hidden else None
        minimum = solver.minimum_sizes([1] * dims.num_layers)[0]
        self.minimum = minimum | {"hidden": solver.min_hidden}
        self.hidden_fixed = self.hidden is not None and hidden_sparsity is not None
        if self.hidden_fixed:  # the least important channels go first (a multiple of `round_to`)
            self.hidden = self._best(self.importance.hidden_scores(), 1 - hidden_sparsity, self.minimum["hidden"])
        self.dense_block = solver.parameters_kept([self._dense_block()], None) if block_floor > 0 else 0

    def _dense_block(self) -> dict[str, int]:
        return {k: dense_size(self.solver.dims, k) for k in BLOCK_KINDS}

    # -- sizes and cost ------------------------------------------------------------------------------------------------
    def sizes(self) -> list[dict[str, int]]:
        return [{kind: int(mask.sum()) for kind, mask in keep.items()} for keep in self.keep]

    def hidden_size(self) -> int | None:
        return None if self.hidden is None else int(self.hidden.sum())

    def excess(self) -> int:
        """Parameters still to remove to meet the budget (<= 0 once it is met)."""
        return self.solver.parameters_kept(self.sizes(), self.hidden_size()) - self.solver.budget

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self, rounds: int = 50) -> PrunedStructure:
        """Remove groups until the budget is met, in about `rounds` rounds; return the structure.

        Each round removes the least valuable chunks worth about 1/`rounds` of the parameters to remove, skipping
        any that would overshoot the budget by more than 0.25% of the model; when nothing else fits, the smallest
        chunk goes, so the model lands just under the budget.
        """
        if self.allocation == "uniform":
            return self._run_uniform()
        excess = self.excess()
        step = max(excess / rounds, 1)
        tolerance = 0.0025 * self.solver.total
        while excess > 0:
            rooms = self._rooms()  # per block, what it may still lose above its floor (empty without a floor)
            candidates = sorted(self.candidates(rooms), key=lambda c: c.value)
            if not candidates:
                limit = self.floor_name if self.block_floor > 0 else "the minimum sizes"
                raise UnreachableSparsityError(
                    f"target_sparsity {self.solver.target:.3f} cannot be reached with {limit}; lower one of them."
                )
            removed = 0
            for candidate in candidates:
                if removed >= min(step, excess):
                    break
                room = rooms.get(candidate.layer)
                if candidate.cost <= excess - removed + tolerance and (room is None or candidate.cost <= room):
                    self.remove(candidate)
                    removed += candidate.cost
                    if room is not None:  # the kinds of a block share its room above the floor within a round
                        rooms[candidate.layer] = room - candidate.cost
            if not removed:
                self.remove(min(candidates, key=lambda c: (c.cost, c.value)))
            excess = self.excess()
        return self.structure()

    def _run_uniform(self, iterations: int = 30) -> PrunedStructure:
        """`allocation="uniform"`: the largest fraction every block keeps of each kind within the budget, by
        bisection; a block keeps its best groups of each kind (at least the minimum size, a multiple of
        `round_to`). Rounding q/k and v sizes to `round_to` can leave much of the budget unspent, so the MLP width,
        the finest kind, then grows: by a common fraction, and last by single chunks, best block first."""
        kinds = [kind for kind in self.kinds if kind != "head"]
        scores = [self.importance.block_scores(layer, keep, kinds) for layer, keep in enumerate(self.keep)]
        channels = None if self.hidden is None or self.hidden_fixed else self.importance.hidden_scores()

        def keep_fraction(fraction: float, only: tuple = ("qk", "v", "mlp", "hidden")) -> int:
            for layer, keep in enumerate(self.keep):
                for kind in kinds:
                    if kind in only:
                        keep[kind] = self._best(scores[layer][kind], fraction, self.minimum[kind])
            if channels is not None and "hidden" in only:
                self.hidden = self._best(channels, fraction, self.minimum["hidden"])
            return self.excess()

        if keep_fraction(0.0) > 0:
            raise UnreachableSparsityError(
                f"target_sparsity {self.solver.target:.3f} cannot be reached with the minimum sizes; lower it."
            )
        for only in (("qk", "v", "mlp", "hidden"), ("mlp",)):
            low, high = 0.0, 1.0
            for _ in range(iterations):
                middle = (low + high) / 2
                low, high = (middle, high) if keep_fraction(middle, only) <= 0 else (low, middle)
            keep_fraction(low, only)
        for layer in sorted(range(len(self.keep)), key=lambda layer: -self._next_mlp_value(scores, layer)):
            previous = self.keep[layer]["mlp"]
            fraction = (int(previous.sum()) + 1) / previous.numel()  # one chunk more
            self.keep[layer]["mlp"] = self._best(scores[layer]["mlp"], fraction, self.minimum["mlp"])
            if self.excess() > 0:
                self.keep[layer]["mlp"] = previous
        return self.structure()

    def _next_mlp_value(self, scores, layer: int) -> float:
        """The summed score of the next `round_to` MLP neurons block `layer` would keep."""
        kept, ranked = int(self.keep[layer]["mlp"].sum()), scores[layer]["mlp"].double().sort(descending=True).values
        return ranked[kept : kept + self.solver.round_to].sum().item()

    def _best(self, scores: torch.Tensor, fraction: float, minimum: int) -> torch.Tensor:
        """A mask of the best `fraction` of the groups by score, rounded up to a multiple of `round_to`."""
        size, chunk = scores.numel(), self.solver.round_to
        kept = min(size, max(minimum, math.ceil(size * fraction / chunk) * chunk))
        mask = torch.zeros(size, dtype=torch.bool)
        mask[torch.argsort(scores.double(), descending=True, stable=True)[:kept]] = True
        return mask

    def remove(self, candidate: Candidate) -> None:
        mask = self.hidden if candidate.layer is None else self.keep[candidate.layer][candidate.kind]
        mask[candidate.indices] = False

    def structure(self) -> PrunedStructure:
        layers = [
            LayerStructure(*(keep[kind.name].nonzero().flatten().tolist() for kind in KINDS.values()))
            for keep in self.keep
        ]
        hidden = None if self.hidden is None else self.hidden.nonzero().flatten().tolist()
        structure = PrunedStructure(self.solver.dims, layers, hidden)
        structure.validate()
        return structure

    # -- candidates ----------------------------------------------------------------------------------------------
    def candidates(self, rooms: dict[int, float]) -> list[Candidate]:
        """Every chunk that may go next in this round, with its value and cost at the current sizes; a block's
        chunks stop at its room above the floor (`rooms`, from `_rooms`)."""
        sizes, hidden = self.sizes(), self.hidden_size()
        found = []
        for layer, keep in enumerate(self.keep):
            costs = self.solver.unit_costs(sizes[layer], hidden)
            scores = self.importance.block_scores(layer, keep, self.kinds)
            room = rooms.get(layer)
            if self.normalize_blocks:
                scale = self._block_scale(keep, scores, costs)
                scores = {kind: value / scale for kind, value in scores.items()}
            for kind in self.kinds:
                found += self._chunks(layer, kind, scores[kind], costs[kind], room)
        if self.hidden is not None and not self.hidden_fixed:
            cost = self.solver.layout.hidden_cost(sizes, hidden)
            scores = self.importance.hidden_scores()
            if self.normalize_blocks:
                scores = scores / max(scores[self.hidden].double().sum().item() / (hidden * cost), 1e-30)
            found += self._chunks(None, "hidden", scores, cost, None)
        return found

    def _block_scale(self, keep, scores, costs) -> float:
        """The block's mean importance per parameter over the groups it keeps (every kind counted)."""
        total = sum(scores[kind][keep[kind]].double().sum().item() for kind in self.kinds)
        held = sum(int(keep[kind].sum()) * costs[kind] for kind in self.kinds)
        return max(total / max(held, 1), 1e-30)

    def _rooms(self) -> dict[int, float]:
        """Per block, the parameters it may still lose above its floor (empty without a floor)."""
        if self.block_floor <= 0:
            return {}
        hidden, floor = self.hidden_size(), self.block_floor * self.dense_block
        return {layer: self.solver.parameters_kept([size], hidden) - floor for layer, size in enumerate(self.sizes())}

    def _chunks(self, layer, kind, scores, cost, room) -> list[Candidate]:
        mask = self.hidden if layer is None else self.keep[layer][kind]
        kept = mask.nonzero().flatten()
        if kind == "head" and self.head_order is not None:
            order = [h for h in self.head_order[layer].tolist() if mask[h]]
        else:
            order = kept[torch.argsort(scores[kept].double(), stable=True)].tolist()
        chunk = 1 if kind == "head" else self.solver.round_to
        floor = 1 if kind == "head" else self.minimum[kind]
        found, spent, start = [], 0, 0
        while True:
            size = (len(order) - start) % chunk or chunk  # the first chunk brings the size to a multiple
            if len(order) - start - size < floor:
                return found
            indices, start = order[start : start + size], start + size
            spent += cost * size
            if room is not None and spent > room:
                return found
            value = scores[indices].double().sum().item() / (cost * size)
            found.append(Candidate(value, cost * size, layer, kind, indices))
