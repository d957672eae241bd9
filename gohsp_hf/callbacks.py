"""When things happen during training: ADMM Z/U updates, and gradual-pruning masks (SGMP)."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from .admm import ADMMState
from .baselines import cubic_sparsity
from .groups import prunable_parameters
from .layer_norms import MaskedLayerNorms


class ADMMCallback(TrainerCallback):
    """Every `update_steps` optimizer steps: Z = Proj(W + U), U += W - Z, rho grows (GOHSP stage 2).

    It runs in `on_step_end`, before the Trainer logs and saves that step, so logs and checkpoints see the
    updated state. The metrics go into `metrics`, which the trainer merges into its next log.
    """

    def __init__(self, state: ADMMState, update_steps: int, metrics: dict):
        self.admm, self.update_steps, self.metrics = state, update_steps, metrics

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.update_steps == 0:
            self.metrics.update(self.admm.update(model))
            control.should_log = True


class GradualPruningCallback(TrainerCallback):
    """SGMP: re-select the structure on the cubic schedule, and keep pruned weights at zero.

    Args:
        select: `select(model, sparsity) -> PrunedStructure` for an intermediate sparsity.
        final_sparsity: the target reached at `total_steps`.
        total_steps: length of the pruning stage.
        update_steps: steps between re-selections.
        metrics: a dict the trainer merges into its next log.
        layer_norms: with `hidden_layer_norm` `"masked"`, `"rescaled"` or `"gradual"`, the model's
            `MaskedLayerNorms`, told the kept residual channels at every re-selection and the step before every step.
    """

    def __init__(
        self, select, final_sparsity: float, total_steps: int, update_steps: int, metrics: dict,
        layer_norms: MaskedLayerNorms | None = None,
    ):  # fmt: skip
        self.select, self.final, self.total, self.update_steps = select, final_sparsity, total_steps, update_steps
        self.metrics, self.masks, self.structure, self.layer_norms = metrics, {}, None, layer_norms

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.update_steps and state.global_step < self.total:
            return
        sparsity = cubic_sparsity(state.global_step, self.total, self.final)
        if sparsity <= 0:
            return
        self.hold(self.select(model, sparsity), model)
        self._apply(model)
        self.metrics.update({"pruning_sparsity": sparsity})
        control.should_log = True

    def on_step_begin(self, args, state, control, **kwargs):
        if self.layer_norms is not None:
            self.layer_norms.at_step(state.global_step + 1)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self._apply(model)

    def hold(self, structure, model, resumed: bool = False) -> None:
        """Hold the masks of `structure`: a new selection, or that of a checkpoint to resume from (`resumed`)."""
        self.structure, self.masks = structure, structure.parameter_masks(model)
        if self.layer_norms is not None:
            self.layer_norms.set_mask(structure.hidden_mask(), rescale_weights=not resumed)

    @torch.no_grad()
    def _apply(self, model):
        params = prunable_parameters(model, hidden=self.structure is not None and self.structure.hidden is not None)
        for name, mask in self.masks.items():
            params[name].mul_(mask)
