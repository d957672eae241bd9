"""GOHSP stage 2: ADMM soft pruning toward a heterogeneous structured-sparse target (docs/method.md, "Stage 2").

Scaled ADMM over the prunable tensors W of every block:

    loss = task_loss + rho / 2 * sum ||W - Z + U||^2
    every `update_steps` steps:  Z = Proj(W + U);  U = U + W - Z;  rho = min(rho * growth, rho_max);
                                 U = U * rho_old / rho_new

U is the scaled dual (dual / rho), so when rho grows it shrinks by the same factor (Boyd et al. 2011, 3.4.1).
Without that, U is over-weighted by rho_new / rho_old at every update, W + U drifts away from W, Z keeps
changing support, and the residual stalls (`benchmarks/accuracy.py` measured 0.57 vs 0.26 after 469 steps).

Proj zeroes every group outside the structure that `select(model, W + U)` chooses under the budget: in the paper's
form (`norm_projection`) the heads of the stage-1 mask and the attention columns and MLP neurons of largest norm,
which is the Euclidean projection; in gohsp's default the joint data-aware allocation (`allocation`), re-run at
every update. It is deterministic, so every DDP rank computes the same Z and U.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .budget import BudgetSolver
from .groups import axis_energy, block_tensors, kind_scores, prunable_parameters
from .model_utils import block_modules, model_dims
from .structure import PrunedStructure


def group_scores(tensors: dict[str, torch.Tensor], model: nn.Module, head_mask: torch.Tensor) -> list[dict]:
    """Squared L2 norm of every q/k column, v column and MLP neuron, over the heads kept by `head_mask`.

    Args:
        tensors: values of `prunable_parameters(model)` (e.g. W + U), by the same names.
        model: the dense model (for names and sizes).
        head_mask: (layers, heads) booleans.

    Returns:
        Per block, `{"qk": (d_h,), "v": (d_h,), "mlp": (I,)}`.
    """
    d, table = model_dims(model), block_tensors(model.config.qkv_bias)
    scores = []
    for layer, (prefix, _) in enumerate(block_modules(model)):
        squares = {name: tensors[f"{prefix}.{name}"].float().pow(2) for name in table}
        keep = {"head": head_mask[layer].to(squares["attention.q_proj.weight"].device)}
        block = kind_scores(axis_energy(squares, table, d), keep)
        scores.append({kind: value.cpu() for kind, value in block.items()})
    return scores


Select = Callable[[nn.Module, dict], PrunedStructure]  # (model, tensors to project) -> structure


def project(
    tensors: dict[str, torch.Tensor], model: nn.Module, select: Select
) -> tuple[dict[str, torch.Tensor], PrunedStructure]:
    """Proj: `tensors` with every group outside the structure `select(model, tensors)` zeroed."""
    structure = select(model, tensors)
    masks = structure.parameter_masks(model)
    return {name: value * masks[name] if name in masks else value for name, value in tensors.items()}, structure


def norm_projection(head_mask: torch.Tensor, solver: BudgetSolver, scorer: Callable = group_scores) -> Select:
    """The paper's Proj: the heads of `head_mask`, then the q/k, v columns and MLP neurons with the largest
    `scorer` scores per parameter (by default squared norms: the closest structured tensors in L2, group-wise)."""

    def select(model: nn.Module, tensors: dict) -> PrunedStructure:
        return solver.solve(scorer(tensors, model, head_mask), head_mask)

    return select


class ADMMState:
    """Z, U and rho of scaled ADMM, with the penalty, the updates and their metrics.

    Args:
        model: the dense model being trained (unwrapped).
        select: `select(model, tensors) -> PrunedStructure`, the structure Proj keeps (e.g. `norm_projection`).
        solver: the budget, for the sparsity the metrics report.
        rho, rho_growth, rho_max: the penalty coefficient, its factor after each update, and its cap.
        hidden: the residual-stream tensors (embeddings, layer norms, classifier) are part of W too.

    Example:

    ```python
    >>> state = ADMMState(model, norm_projection(ranking.mask, solver), solver, rho=1e-3)
    >>> loss = task_loss + state.penalty(model)      # every training step
    >>> metrics = state.update(model)                # every `admm_update_steps` steps
    ```
    """

    def __init__(self, model, select, solver, rho=1e-3, rho_growth=1.3, rho_max=1.0, hidden=False):
        self.select, self.solver = select, solver
        self.rho, self.rho_growth, self.rho_max = float(rho), float(rho_growth), float(rho_max)
        self.names = list(prunable_parameters(model, hidden))
        weights = {name: p.detach() for name, p in self._weights(model).items()}
        self.U = {name: torch.zeros_like(w) for name, w in weights.items()}
        self.Z, self.structure = project(weights, model, select)
        self._refresh_target()
        self.num_updates = 0

    def _weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {name: params[name] for name in self.names}

    def _refresh_target(self) -> None:
        # The penalty's target Z - U changes only at updates; precompute it once.
        self.target = {name: self.Z[name] - self.U[name] for name in self.Z}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """rho / 2 * sum ||W - Z + U||^2, differentiable in W."""
        params = self._weights(model)
        # One fused call per operation over all tensors: on small models per-tensor op overhead dominates.
        differences = torch._foreach_sub([params[n] for n in self.names], [self.target[n] for n in self.names])
        return 0.5 * self.rho * torch.stack(torch._foreach_norm(differences)).pow(2).sum()

    @torch.no_grad()
    def update(self, model: nn.Module) -> dict[str, float]:
        """Z = Proj(W + U); U = U + W - Z; grow rho and rescale U by rho_old / rho_new. Returns the metrics."""
        weights = {name: p.detach() for name, p in self._weights(model).items()}
        self.Z, self.structure = project({n: weights[n] + self.U[n] for n in weights}, model, self.select)
        old_rho, self.rho = self.rho, min(self.rho * self.rho_growth, self.rho_max)
        for name, w in weights.items():
            self.U[name] += w - self.Z[name]
            self.U[name] *= old_rho / self.rho  # U is dual / rho: rescale it with rho
        self.num_updates += 1
        self._refresh_target()
        return self.metrics(model)

    @torch.no_grad()
    def metrics(self, model: nn.Module) -> dict[str, float]:
        """Primal residual ||W - Z|| / ||W||, rho, and the parameter sparsity of the current structure."""
        weights = self._weights(model)
        diff = sum((weights[n].detach() - self.Z[n]).pow(2).sum() for n in weights)
        norm = sum(w.detach().pow(2).sum() for w in weights.values())
        return {
            "admm_residual": (diff / norm.clamp_min(1e-30)).sqrt().item(),
            "admm_rho": self.rho,
            "admm_sparsity": self.solver.sparsity(self.structure),
        }

    def state_dict(self) -> dict:
        return {
            "Z": self.Z,
            "U": self.U,
            "rho": self.rho,
            "num_updates": self.num_updates,
            "structure": self.structure.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.Z, self.U, self.rho = state["Z"], state["U"], state["rho"]
        self.num_updates = state["num_updates"]
        self.structure = PrunedStructure.from_dict(state["structure"])
        self._refresh_target()
