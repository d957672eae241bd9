"""How important every prunable group is: weight norm, or data-aware first-order Taylor / empirical Fisher.

All three sum a per-element quantity onto each axis layout of the group table (`groups.axis_energy`), so a group
of any kind gets its score from the same numbers:

- `norm`: `w²`. Pruning by it makes the ADMM projection the Euclidean one (the paper's soft pruning).
- `taylor`: `|w · g|`, with `g = ∂L/∂w` summed over the calibration batches: the first-order change of the loss
  when the element is zeroed (Molchanov et al. 2017; Torch-Pruning's `TaylorImportance`).
- `fisher`: `Σ_b (Σ_{w in group} w · g_b)²`, per calibration batch `b`: the squared first-order change of the
  loss when the *whole group* is removed, i.e. the empirical Fisher information of the group's mask
  (Molchanov et al. 2019; Liu et al. 2021). It cannot be summed per element first, so its energies keep the
  batch axis and the group sum is squared afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .groups import Layout, axis_energy, kind_scores

IMPORTANCES = ("taylor", "fisher", "norm")


@dataclass
class GroupImportance:
    """Energies from which every group's score is summed.

    Attributes:
        blocks: per block, `layout -> (batches, *kind sizes)`, e.g. `("head", "qk") -> (B, H, d_h)`.
        hidden: `(batches, hidden_size)` for the residual channels, or None when they are not scored.
        squared: group scores are `Σ_b (Σ e_b)²` (Fisher) rather than `Σ_b Σ e_b`.
    """

    blocks: list[dict[tuple[str, ...], torch.Tensor]]
    hidden: torch.Tensor | None = None
    squared: bool = False

    def block_scores(self, layer: int, keep: dict[str, torch.Tensor], kinds) -> dict[str, torch.Tensor]:
        """Scores (one per group) of each of `kinds` in block `layer`, given the groups `keep` holds."""
        scores = kind_scores(self.blocks[layer], keep, kinds, batch_axis=True)
        return {kind: self._reduce(value) for kind, value in scores.items()}

    def head_scores(self) -> torch.Tensor:
        """(layers, heads) score of every head of the dense structure."""
        full = {kind: torch.ones(size, dtype=torch.bool) for kind, size in self._sizes().items()}
        return torch.stack([self.block_scores(layer, full, ("head",))["head"] for layer in range(len(self.blocks))])

    def _sizes(self) -> dict[str, int]:
        sizes = {}
        for layout, value in self.blocks[0].items():
            sizes.update(zip(layout, value.shape[1:]))
        return sizes

    def hidden_scores(self) -> torch.Tensor:
        return self._reduce(self.hidden)

    def cpu(self) -> GroupImportance:
        blocks = [{layout: value.cpu() for layout, value in block.items()} for block in self.blocks]
        return GroupImportance(blocks, None if self.hidden is None else self.hidden.cpu(), self.squared)

    def _reduce(self, value: torch.Tensor) -> torch.Tensor:  # (batches, n) -> (n,)
        return value.pow(2).sum(0) if self.squared else value.sum(0)


def norm_importance(tensors: dict[str, torch.Tensor], layout: Layout) -> GroupImportance:
    """Squared norms of `tensors` (values of the layout's prunable tensors, e.g. W + U), by full name."""
    return _from_elements({name: t.detach().float().pow(2) for name, t in tensors.items()}, layout).cpu()


def data_importance(
    model: nn.Module,
    batches: Iterable[dict],
    layout: Layout,
    kind: str = "taylor",
    tensors: dict[str, torch.Tensor] | None = None,
) -> GroupImportance:
    """Taylor or Fisher importance of every group, from the loss gradient on `batches`.

    Args:
        model: the model being pruned (its `forward` returns a loss when given `labels`).
        batches: calibration batches, dicts with `pixel_values` and `labels`.
        layout: the model's group table.
        kind: `"taylor"` or `"fisher"`.
        tensors: the values that would be pruned (default: the weights themselves; ADMM passes W + U).
    """
    params = layout.parameters(model)
    values = {name: (tensors[name] if tensors is not None else p).detach().float() for name, p in params.items()}
    device, was_training = next(iter(params.values())).device, model.training
    model.eval()  # no dropout: the same scores on every process
    summed, per_batch = None, []
    try:
        with torch.enable_grad():  # ADMM calls this from its no-grad update
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items() if k in ("pixel_values", "labels")}
                grads = torch.autograd.grad(model(**batch).loss, list(params.values()))
                grads = {name: g.float() for name, g in zip(params, grads)}
                if kind == "fisher":
                    per_batch.append(_from_elements({n: values[n] * grads[n] for n in params}, layout))
                else:
                    summed = grads if summed is None else {n: summed[n] + grads[n] for n in params}
    finally:
        model.train(was_training)
    if kind == "fisher":
        return _broadcast(_stack(per_batch))
    if summed is None:
        raise ValueError("No calibration batches: the data passed to the importance estimate is empty.")
    return _broadcast(_from_elements({n: (values[n] * summed[n]).abs() for n in params}, layout))


def _broadcast(importance: GroupImportance) -> GroupImportance:
    """Under DDP, every process takes rank 0's scores, so that all choose the same structure even where GPU
    kernels are not bit-reproducible. The scores are returned on the CPU, where the allocation runs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensors = [t for block in importance.blocks for t in block.values()] + [importance.hidden]
        for tensor in tensors:
            if tensor is not None:
                torch.distributed.broadcast(tensor, src=0)
    return importance.cpu()


def _from_elements(elements: dict[str, torch.Tensor], layout: Layout) -> GroupImportance:
    """Sum per-element importance onto every block's axis layouts (and the residual channels)."""
    blocks = [
        {
            k: v.unsqueeze(0)
            for k, v in axis_energy(layout.block_view(elements, layer), layout.block_table, layout.dims).items()
        }
        for layer in range(layout.dims.num_layers)
    ]
    hidden = layout.hidden_energy(elements)
    return GroupImportance(blocks, hidden.unsqueeze(0) if hidden is not None else None)


def _stack(parts: list[GroupImportance]) -> GroupImportance:
    if not parts:
        raise ValueError("No calibration batches: the data passed to the importance estimate is empty.")
    blocks = [
        {k: torch.cat([p.blocks[i][k] for p in parts]) for k in parts[0].blocks[i]}
        for i in range(len(parts[0].blocks))
    ]
    hidden = torch.cat([p.hidden for p in parts]) if parts[0].hidden is not None else None
    return GroupImportance(blocks, hidden, squared=True)
