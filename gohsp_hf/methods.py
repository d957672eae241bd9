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

The base class is structured one-shot magnitude pruning (SOMP): heads and groups by weight norm, pruned at the
start, and the pruning stage's epochs spent fine-tuning instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .admm import ADMMState, group_scores, project
from .baselines import magnitude_head_mask, random_group_scores, random_head_mask
from .budget import BudgetSolver
from .callbacks import ADMMCallback, GradualPruningCallback
from .groups import prunable_parameters
from .head_ranking import rank_heads
from .structure import PrunedStructure

if TYPE_CHECKING:
    from .gohsp_trainer import GOHSPTrainer


class PruningMethod:
    """Structured one-shot magnitude pruning (SOMP); the other methods override what they do differently.

    Args:
        trainer: the `GOHSPTrainer` that runs the method (its args, budget solver, stages and results).
    """

    stage_name: str | None = None  # the checkpoint folder of the method's pruning stage; None: no such stage
    description = "structured one-shot magnitude pruning (a baseline)"  # for the model card

    def __init__(self, trainer: GOHSPTrainer):
        self.trainer, self.args = trainer, trainer.args

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def rank_heads(self, model: nn.Module) -> torch.Tensor:
        """The (layers, heads) mask of kept heads: the heads with the largest weight norm."""
        return magnitude_head_mask(model, self.num_pruned_heads(), self.args.ranking_scope)

    def num_pruned_heads(self) -> int:
        """Heads removed by stage 1: `head_sparsity` of all heads, one per block kept."""
        dims = self.trainer.dims
        total = round(self.args.head_sparsity * dims.num_layers * dims.num_heads)
        return min(total, dims.num_layers * (dims.num_heads - 1))

    def min_head_counts(self) -> list[int]:
        """Heads per block after stage 1 at the least, for the feasibility check before any work."""
        dims = self.trainer.dims
        return [max(1, dims.num_heads - math.ceil(self.num_pruned_heads() / dims.num_layers))] * dims.num_layers

    # -- scores and the structure ------------------------------------------------------------------------------
    def group_scores(self, tensors: dict, model: nn.Module, head_mask: torch.Tensor) -> list[dict]:
        """Per block, the importance of every q/k dimension, v dimension and MLP neuron (larger is kept).

        `tensors` are the values of `prunable_parameters(model)` to score (W, or W + U in ADMM)."""
        return group_scores(tensors, model, head_mask)

    @torch.no_grad()
    def final_structure(self, model: nn.Module, head_mask: torch.Tensor) -> PrunedStructure:
        """The structure the hard prune keeps: Proj(W) under the budget."""
        weights = {name: p.detach() for name, p in prunable_parameters(model).items()}
        return project(weights, model, head_mask, self.trainer.solver, self.group_scores)[1]

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def pruning_stage(self, model: nn.Module, head_mask: torch.Tensor, checkpoint=None, state=None) -> None:
        """Train toward the structure (ADMM, a gradual schedule...); one-shot methods do nothing here."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss during the pruning stage, or None."""
        return None

    def overflow_hint(self) -> str:
        """What to change when `penalty` overflows."""
        return "lower the learning rate"

    def state_dict(self) -> dict | None:
        """What a checkpoint of the pruning stage must hold to resume it exactly."""
        return None

    # -- stage 3 ---------------------------------------------------------------------------------------------
    def finetune_length(self) -> tuple[float, int]:
        """Epochs and steps of fine-tuning; a method without a pruning stage fine-tunes for its length too."""
        args = self.args
        if self.stage_name is not None:
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

    def final_structure(self, model: nn.Module, head_mask: torch.Tensor) -> PrunedStructure:
        return self.trainer.solver.solve(random_group_scores(self.trainer.dims, self.args.seed), head_mask)


class SGMP(PruningMethod):
    """Structured gradual magnitude pruning: weight norm on the cubic schedule of Zhu & Gupta (2018)."""

    stage_name = "sgmp"
    description = "structured gradual magnitude pruning (a baseline)"

    def __init__(self, trainer: GOHSPTrainer):
        super().__init__(trainer)
        self.gradual: GradualPruningCallback | None = None

    def pruning_stage(self, model, head_mask, checkpoint=None, state=None) -> None:
        args = self.args
        total = self.trainer.stage_steps(args.admm_epochs, args.admm_max_steps)
        self.gradual = GradualPruningCallback(
            self.structure_at, args.target_sparsity, total, args.admm_update_steps, self.trainer.pruning_metrics
        )
        if state is not None and state["structure"] is not None:
            self.gradual.restore(PrunedStructure.from_dict(state["structure"]), model)
        self.trainer.run_stage(self.stage_name, args.admm_epochs, args.admm_max_steps, [self.gradual], checkpoint)
        self.gradual = None

    def structure_at(self, model: nn.Module, sparsity: float) -> PrunedStructure:
        """The structure at an intermediate sparsity: heads and groups by weight norm."""
        args = self.args
        solver = BudgetSolver.from_model(model, sparsity, args.min_mlp_width, args.round_to)
        heads = round(self.num_pruned_heads() * sparsity / args.target_sparsity)
        mask = magnitude_head_mask(model, heads, args.ranking_scope)
        weights = {name: p.detach() for name, p in prunable_parameters(model).items()}
        return solver.solve(self.group_scores(weights, model, mask), mask)

    def state_dict(self) -> dict | None:
        if self.gradual is None:
            return None
        return {"structure": self.gradual.structure.to_dict() if self.gradual.structure else None}


class GOHSP(PruningMethod):
    """GOHSP: graph + Markov-chain head ranking, then ADMM soft pruning toward the structured target."""

    stage_name = "admm"
    description = "GOHSP (graph-based head ranking, ADMM soft pruning, hard pruning and fine-tuning)"

    def __init__(self, trainer: GOHSPTrainer):
        super().__init__(trainer)
        self.admm: ADMMState | None = None
        self.ranking = None

    def rank_heads(self, model: nn.Module) -> torch.Tensor:
        args, dims = self.args, self.trainer.dims
        self.ranking = rank_heads(
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
        self.trainer.results["head_scores"] = self.ranking.scores.tolist()
        self.trainer.results["ranking_iterations"] = self.ranking.iterations
        return self.ranking.mask

    def pruning_stage(self, model, head_mask, checkpoint=None, state=None) -> None:
        args, results = self.args, self.trainer.results
        self.admm = ADMMState(
            model, head_mask, self.trainer.solver, args.rho, args.rho_growth, args.rho_max, self.group_scores
        )
        if state is not None:
            self.admm.load_state_dict(state)
        else:
            results["admm_initial"] = self.admm.metrics(model)
            self.trainer.pruning_metrics.update(results["admm_initial"])  # goes out with the first log
        callback = ADMMCallback(self.admm, args.admm_update_steps, self.trainer.pruning_metrics)
        self.trainer.run_stage(self.stage_name, args.admm_epochs, args.admm_max_steps, [callback], checkpoint)
        results["admm_final"] = self.admm.metrics(model)
        self.admm = None  # the penalty stops here

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return self.admm.penalty(model) if self.admm is not None else None

    def overflow_hint(self) -> str:
        return (
            f"the ADMM penalty overflowed (rho = {self.admm.rho:g}); lower rho_max or rho_growth, or lengthen "
            "admm_update_steps so the weights can follow Z"
        )

    def state_dict(self) -> dict | None:
        return self.admm.state_dict() if self.admm is not None else None


# `args.method` -> the class that runs it. Register a new method with one line: PRUNING_METHODS["name"] = Class.
PRUNING_METHODS: dict[str, type[PruningMethod]] = {"gohsp": GOHSP, "somp": SOMP, "sgmp": SGMP, "random": RandomPruning}


def stage_folders(method: str) -> tuple[str, ...]:
    """The checkpoint folders (under `output_dir`) of a run of `method`, the latest stage first."""
    stage = PRUNING_METHODS[method].stage_name
    return ("finetune", stage) if stage else ("finetune",)
