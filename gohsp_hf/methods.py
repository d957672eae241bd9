"""One object per pruning method: how it ranks heads, scores groups, runs its pruning stage and hard prunes.

`GOHSPTrainer` asks the method of `args.method` (a key of `PRUNING_METHODS`) and never branches on its name.
A new method is a subclass and one registry line:

```python
>>> from gohsp_hf.methods import PRUNING_METHODS, PruningMethod
>>> class KeepFirst(PruningMethod):
...     '''Keeps the first heads and groups of every block.'''
...     def group_scores(self, tensors, model, head_mask):
...         scores = super().group_scores(tensors, model, head_mask)
...         return [{k: -torch.arange(len(v), dtype=torch.float) for k, v in s.items()} for s in scores]
>>> PRUNING_METHODS["keep_first"] = KeepFirst
```

The base class is structured one-shot magnitude pruning (SOMP): heads at `head_sparsity` (default half the
target) and groups by weight norm, pruned at the start, and the pruning stage's epochs spent fine-tuning instead.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .admm import ADMMState, group_scores, norm_projection
from .allocation import Allocation
from .baselines import cubic_sparsity, magnitude_head_mask, random_group_scores, random_head_mask
from .budget import BudgetSolver
from .callbacks import ADMMCallback, GradualPruningCallback
from .groups import prunable_parameters
from .head_ranking import rank_heads, select_heads
from .importance import GroupImportance, data_importance, norm_importance
from .layer_norms import STAGE_LAYER_NORMS, MaskedLayerNorms
from .structure import PrunedStructure, apply_masks

if TYPE_CHECKING:
    from .gohsp_trainer import GOHSPTrainer

HEAD_RANKINGS = ("graph", "importance")
SOFT_PRUNING = ("admm", "gradual_admm", "gradual", "none")


class PruningMethod:
    """Structured one-shot magnitude pruning (SOMP); the other methods override what they do differently.

    Args:
        trainer: the `GOHSPTrainer` that runs the method (its args, budget solver, stages and results).
    """

    stage_name: str | None = None  # the checkpoint folder of the method's pruning stage; None: no such stage
    description = "structured one-shot magnitude pruning (a baseline)"  # for the model card
    supports_hidden = False  # whether it can prune residual-stream channels
    # the default of `lr_scheduler_across_stages`: the baselines keep the schedule per stage they were measured with
    schedule_across_stages = False

    def __init__(self, trainer: GOHSPTrainer):
        self.trainer, self.args = trainer, trainer.args
        self.gradual: GradualPruningCallback | None = None  # the masks of a gradual pruning stage, while it runs
        self.reached: PrunedStructure | None = None  # the structure a gradual stage ended on
        self.layer_norms: MaskedLayerNorms | None = None  # the dense model's LayerNorms over the kept channels
        if self.args.prune_hidden_size and not self.supports_hidden:
            raise ValueError(
                f"prune_hidden_size is not supported by method {self.args.method!r}; use method 'gohsp', or leave "
                "prune_hidden_size off."
            )

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def head_sparsity(self) -> float | None:
        """The fraction of heads stage 1 removes (None: the allocation decides)."""
        return self.args.head_sparsity if self.args.head_sparsity is not None else self.args.target_sparsity / 2

    def num_pruned_heads(self) -> int:
        """Heads removed by stage 1: `head_sparsity` of all heads, one per block kept."""
        dims, fraction = self.trainer.dims, self.head_sparsity() or 0.0
        return min(round(fraction * dims.num_layers * dims.num_heads), dims.num_layers * (dims.num_heads - 1))

    def min_head_counts(self) -> list[int]:
        """Heads per block after stage 1 at the least, for the feasibility check before any work."""
        dims = self.trainer.dims
        return [max(1, dims.num_heads - math.ceil(self.num_pruned_heads() / dims.num_layers))] * dims.num_layers

    def rank_heads(self, model: nn.Module) -> torch.Tensor:
        """The (layers, heads) mask of kept heads: the heads with the largest weight norm."""
        return magnitude_head_mask(model, self.num_pruned_heads(), self.args.ranking_scope)

    # -- scores and the structure ------------------------------------------------------------------------------
    def group_scores(self, tensors: dict, model: nn.Module, head_mask: torch.Tensor) -> list[dict]:
        """Per block, the importance of every q/k dimension, v dimension and MLP neuron (larger is kept).

        `tensors` are the values of `prunable_parameters(model)` to score (W, or W + U in ADMM)."""
        return group_scores(tensors, model, head_mask)

    def select(self, model: nn.Module, tensors: dict) -> PrunedStructure:
        """The structure the budget keeps for these tensors: the stage-1 heads, then `group_scores`."""
        return norm_projection(self.trainer.head_mask, self.trainer.solver, self.group_scores)(model, tensors)

    def end_pruning_stage(self) -> None:
        """At the hard prune: take off what the pruning stage added to the dense model (masked LayerNorms)."""
        if self.layer_norms is not None:
            self.layer_norms.remove()
            self.layer_norms = None

    @torch.no_grad()
    def final_structure(self, model: nn.Module) -> PrunedStructure:
        """The structure the hard prune keeps: the one a gradual stage ended on, or chosen now."""
        if self.reached is not None:
            return self.reached
        hidden = self.args.prune_hidden_size
        return self.select(model, {name: p.detach() for name, p in prunable_parameters(model, hidden).items()})

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def has_pruning_stage(self) -> bool:
        return self.stage_name is not None

    def pruning_stage(self, model: nn.Module, checkpoint=None, state=None) -> None:
        """Train toward the structure (ADMM, a gradual schedule...); one-shot methods do nothing here."""

    def gradual_stage(self, model: nn.Module, structure_at, checkpoint=None, state=None) -> None:
        """Masks on the cubic schedule of Zhu & Gupta (2018): every `admm_updates`-th of the stage the structure at
        that point's sparsity, `structure_at(model, sparsity)`, is chosen on the masked model and its masks held,
        reaching `target_sparsity` at the stage's last step (so the hard prune changes nothing)."""
        args = self.args
        total = self.trainer.stage_steps(args.admm_epochs, args.admm_max_steps)
        interval = args.admm_update_steps or max(1, total // args.admm_updates)
        if args.prune_hidden_size and args.hidden_layer_norm in STAGE_LAYER_NORMS:  # until the hard prune
            norm = args.hidden_layer_norm
            self.layer_norms = MaskedLayerNorms(model, total if norm == "gradual" else None, norm == "rescaled")
        self.gradual = GradualPruningCallback(
            structure_at, args.target_sparsity, total, interval, self.trainer.pruning_metrics, self.layer_norms
        )
        if state is not None and state.get("structure") is not None:
            self.gradual.hold(PrunedStructure.from_dict(state["structure"]), model, resumed=True)
        self.trainer.results["gradual_schedule"] = {"update_steps": interval, "stage_steps": total}
        self.trainer.run_stage(self.stage_name, args.admm_epochs, args.admm_max_steps, [self.gradual], checkpoint)
        self.reached, self.gradual = self.gradual.structure, None

    def gradual_state(self) -> dict | None:
        if self.gradual is None:
            return None
        return {"structure": self.gradual.structure.to_dict() if self.gradual.structure else None}

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss during the pruning stage, or None."""
        return None

    def overflow_hint(self) -> str:
        """What to change when `penalty` overflows."""
        return "lower the learning rate"

    def state_dict(self) -> dict | None:
        """What a checkpoint of the pruning stage must hold to resume it exactly."""
        return self.gradual_state()

    # -- stage 3 ---------------------------------------------------------------------------------------------
    def finetune_length(self) -> tuple[float, int]:
        """Epochs and steps of fine-tuning; a method without a pruning stage fine-tunes for its length too."""
        args = self.args
        if self.has_pruning_stage():
            return args.finetune_epochs, args.finetune_max_steps
        both_in_steps = args.finetune_max_steps > 0 and args.admm_max_steps > 0
        steps = args.finetune_max_steps + args.admm_max_steps if both_in_steps else -1
        return args.finetune_epochs + args.admm_epochs, steps


class SOMP(PruningMethod):
    """Structured one-shot magnitude pruning (Han et al. 2016, made structured)."""


class RandomPruning(PruningMethod):
    """Random heads and groups (seeded, the same on every process), as a floor."""

    description = "random structured pruning (a baseline)"

    def rank_heads(self, model: nn.Module) -> torch.Tensor:
        return random_head_mask(self.trainer.dims, self.num_pruned_heads(), self.args.seed, self.args.ranking_scope)

    def select(self, model: nn.Module, tensors: dict) -> PrunedStructure:
        return self.trainer.solver.solve(
            random_group_scores(self.trainer.dims, self.args.seed), self.trainer.head_mask
        )


class SGMP(PruningMethod):
    """Structured gradual magnitude pruning: weight norm on the cubic schedule of Zhu & Gupta (2018)."""

    stage_name = "sgmp"
    description = "structured gradual magnitude pruning (a baseline)"

    def pruning_stage(self, model, checkpoint=None, state=None) -> None:
        self.gradual_stage(model, self.structure_at, checkpoint, state)

    def structure_at(self, model: nn.Module, sparsity: float) -> PrunedStructure:
        """The structure at an intermediate sparsity: heads and groups by weight norm."""
        args = self.args
        solver = BudgetSolver.from_model(model, sparsity, args.min_mlp_width, args.round_to)
        heads = round(self.num_pruned_heads() * sparsity / args.target_sparsity)
        mask = magnitude_head_mask(model, heads, args.ranking_scope)
        weights = {name: p.detach() for name, p in prunable_parameters(model).items()}
        return solver.solve(self.group_scores(weights, model, mask), mask)


class GOHSP(PruningMethod):
    """GOHSP: graph-ranked heads and a data-aware allocation of the budget over every group kind, reached during
    the pruning stage with gradual masks (default) or ADMM soft pruning (or pruned at once), then hard pruning
    and fine-tuning."""

    stage_name = "admm"
    description = (
        "GOHSP (graph-based head ranking, one data-aware allocation of the budget over heads, attention "
        "dimensions, MLP neurons and residual channels, reached while training by gradual masks or ADMM soft "
        "pruning, hard pruning and fine-tuning)"
    )
    supports_hidden = True
    schedule_across_stages = True  # measured better on the benchmark's worst settings (docs/method.md)

    def __init__(self, trainer: GOHSPTrainer):
        super().__init__(trainer)
        self.admm: ADMMState | None = None
        self.admm_updates = 1
        self.head_order: torch.Tensor | None = None  # per block, heads in the order they may go

    def head_sparsity(self) -> float | None:
        return self.args.head_sparsity  # None: heads compete in the allocation

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def rank_heads(self, model: nn.Module) -> torch.Tensor:
        """Graph ranking (the paper's stage 1) or importance; the mask keeps every head unless heads are split off
        before the allocation (`head_sparsity`)."""
        if self.args.head_ranking == "graph":
            mask = self._graph_ranking(model)
        else:
            scores = self.importance(model, None).head_scores()  # (layers, heads)
            self.head_order = torch.argsort(scores, dim=1, stable=True)
            mask = select_heads(scores, self.num_pruned_heads(), self.args.ranking_scope)
        return mask

    def _graph_ranking(self, model: nn.Module) -> torch.Tensor:
        args, dims = self.args, self.trainer.dims
        ranking = rank_heads(
            model,
            self.trainer.calibration_batches(),
            head_sparsity=self.num_pruned_heads() / (dims.num_layers * dims.num_heads),
            num_samples=args.ranking_samples,
            similarity=args.ranking_similarity,
            damping=args.ranking_damping,
            direction=args.ranking_direction,
            scope=args.ranking_scope,
            progress=not args.disable_tqdm and self.trainer.is_world_process_zero(),
        )
        self.trainer.results["head_scores"] = ranking.scores.tolist()
        self.trainer.results["ranking_iterations"] = ranking.iterations
        # keep_distinct removes the most central heads first, keep_central the least central.
        self.head_order = torch.argsort(ranking.scores, dim=1, descending=args.ranking_direction == "keep_distinct")
        return ranking.mask

    # -- scores and the structure ------------------------------------------------------------------------------
    def importance(self, model: nn.Module, tensors: dict | None, window: int = 0) -> GroupImportance:
        """`args.importance` of every group; data-aware scores use the `window`-th window of calibration images."""
        layout = self.trainer.solver.layout
        if self.args.importance == "norm":
            tensors = tensors if tensors is not None else layout.parameters(model)
            return norm_importance(tensors, layout)
        batches = self.trainer.importance_batches(window)
        return data_importance(model, batches, layout, self.args.importance, tensors)

    def select(self, model: nn.Module, tensors: dict) -> PrunedStructure:
        """The structure Proj keeps now: one allocation of the budget over every group kind (heads only if not split
        off in stage 1), at the target of this point of the stage. Before any ADMM update (and for a one-shot
        prune) it is reached in `importance_steps` allocations, each rescoring the model masked by the last."""
        if self.admm is not None:
            return self._allocate(model, tensors, self.admm_target(self.admm.num_updates + 1))
        structure, steps, target = None, self.args.importance_steps, self.admm_target(0)
        for step in range(1, steps + 1):
            if structure is not None:
                model = apply_masks(copy.deepcopy(model), structure)
                tensors = {name: value * mask for name, value, mask in _masked(tensors, structure, model)}
            structure = self._allocate(model, tensors, target * step / steps)
        return structure

    def _allocate(self, model: nn.Module, tensors: dict, target: float) -> PrunedStructure:
        solver, args = self.trainer.solver, self.args
        if target <= 0:
            return PrunedStructure.dense(solver.dims, hidden=solver.layout.hidden)
        fixed_heads = self.trainer.head_mask if self.head_sparsity() is not None else None
        hidden_sparsity = self.hidden_sparsity() * target / args.target_sparsity if args.prune_hidden_size else None
        allocation = Allocation(
            solver.at(target), self.importance(model, tensors), self.head_order, fixed_heads, args.block_floor,
            hidden_sparsity, args.normalize_block_scores, args.block_floor_of, args.allocation,
        )  # fmt: skip
        return allocation.run()

    @torch.no_grad()
    def structure_at(self, model: nn.Module, sparsity: float) -> PrunedStructure:
        """`soft_pruning="gradual"`: one allocation at an intermediate sparsity, scored on the (masked) model as it
        trains; the groups already masked score zero, so they stay out."""
        tensors = {name: p.detach() for name, p in self.trainer.solver.layout.parameters(model).items()}
        return self._allocate(model, tensors, sparsity)

    def hidden_sparsity(self) -> float:
        """The fraction of residual channels removed at the full target (default: that of a uniform width cut)."""
        args = self.args
        return args.hidden_sparsity if args.hidden_sparsity is not None else 1 - math.sqrt(1 - args.target_sparsity)

    def admm_target(self, update: int) -> float:
        """The sparsity Proj aims at after `update` updates: the target throughout (`soft_pruning="admm"`), or
        rising on the cubic schedule to the target at 3/4 of the updates (`"gradual_admm"`)."""
        if self.soft_pruning() != "gradual_admm":
            return self.args.target_sparsity
        ramp = max(1, round(0.75 * self.admm_updates))
        return cubic_sparsity(update, ramp, self.args.target_sparsity)

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def soft_pruning(self) -> str:
        """How the pruning stage approaches the structure: `args.soft_pruning`."""
        return self.args.soft_pruning

    def has_pruning_stage(self) -> bool:
        return self.soft_pruning() != "none"

    def admm_schedule(self, steps: int) -> tuple[int, float]:
        """Steps between updates and rho's growth, from the stage length: `admm_updates` updates that bring rho
        from `rho` to `rho_max` (unless `admm_update_steps` / `rho_growth` are given)."""
        args = self.args
        interval = args.admm_update_steps or max(1, steps // args.admm_updates)
        self.admm_updates = max(1, steps // interval)
        return interval, args.rho_growth or (args.rho_max / args.rho) ** (1 / self.admm_updates)

    def pruning_stage(self, model, checkpoint=None, state=None) -> None:
        if not self.has_pruning_stage():
            return
        if self.soft_pruning() == "gradual":
            return self.gradual_stage(model, self.structure_at, checkpoint, state)
        args, trainer = self.args, self.trainer
        steps = trainer.stage_steps(args.admm_epochs, args.admm_max_steps)
        interval, growth = self.admm_schedule(steps)
        self.admm = ADMMState(
            model, self.select, trainer.solver, args.rho, growth, args.rho_max, args.prune_hidden_size
        )
        if state is not None:
            self.admm.load_state_dict(state)
        else:
            trainer.results["admm_initial"] = self.admm.metrics(model)
            trainer.pruning_metrics.update(trainer.results["admm_initial"])  # goes out with the first log
        trainer.results["admm_schedule"] = {"update_steps": interval, "rho_growth": growth, "stage_steps": steps}
        callback = ADMMCallback(self.admm, interval, trainer.pruning_metrics)
        trainer.run_stage(self.stage_name, args.admm_epochs, args.admm_max_steps, [callback], checkpoint)
        trainer.results["admm_final"] = self.admm.metrics(model)
        self.admm = None  # the penalty stops here

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return self.admm.penalty(model) if self.admm is not None else None

    def overflow_hint(self) -> str:
        return (
            f"the ADMM penalty overflowed (rho = {self.admm.rho:g}); lower rho_max or rho_growth, or lengthen "
            "admm_update_steps so the weights can follow Z"
        )

    def state_dict(self) -> dict | None:
        return self.admm.state_dict() if self.admm is not None else super().state_dict()


class GOHSPPaper(GOHSP):
    """GOHSP as the paper lays it out: graph-ranked heads at `head_sparsity` (default half the target) in stage 1,
    then ADMM toward the weight-norm projection of the other groups (every `admm_update_steps`, default 100)."""

    description = "GOHSP as in the paper (graph-ranked heads, ADMM toward the weight-norm projection, fine-tuning)"
    supports_hidden = False
    schedule_across_stages = False  # the paper fine-tunes the hard-pruned model as a stage of its own

    def head_sparsity(self) -> float | None:
        return PruningMethod.head_sparsity(self)

    def select(self, model: nn.Module, tensors: dict) -> PrunedStructure:
        return PruningMethod.select(self, model, tensors)

    def soft_pruning(self) -> str:
        return "admm"  # the paper's stage 2, whatever `args.soft_pruning` says

    def admm_schedule(self, steps: int) -> tuple[int, float]:
        return self.args.admm_update_steps or 100, self.args.rho_growth or 1.3


# `args.method` -> the class that runs it. Register a new method with one line: PRUNING_METHODS["name"] = Class.
PRUNING_METHODS: dict[str, type[PruningMethod]] = {
    "gohsp": GOHSP,
    "gohsp_paper": GOHSPPaper,
    "somp": SOMP,
    "sgmp": SGMP,
    "random": RandomPruning,
}


def stage_folders(method: str) -> tuple[str, ...]:
    """The checkpoint folders (under `output_dir`) of a run of `method`, the latest stage first."""
    stage = PRUNING_METHODS[method].stage_name
    return ("finetune", stage) if stage else ("finetune",)


def _masked(tensors: dict, structure: PrunedStructure, model: nn.Module):
    """`(name, value, mask)` for every tensor, its mask in `structure` (1 where the structure does not touch it)."""
    masks = structure.parameter_masks(model)
    return [(name, value, masks.get(name, 1)) for name, value in tensors.items()]
