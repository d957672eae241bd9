"""`GOHSPConfig`: the `TrainingArguments` of a GOHSP pruning run, plus the method's knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import SchedulerType, TrainingArguments

from .allocation import ALLOCATIONS, BLOCK_FLOOR_OF
from .head_ranking import DIRECTIONS, SCOPES, SIMILARITIES
from .importance import IMPORTANCES
from .layer_norms import STAGE_LAYER_NORMS, TRAINING_LAYER_NORMS
from .methods import HEAD_RANKINGS, PRUNING_METHODS, SOFT_PRUNING

# `hidden_layer_norm`'s default for `gohsp` (docs/method.md, "Why these defaults"): plain statistics from the
# gradual stage on (`masked`) once the pruning stage and fine-tuning together last at least this many epochs,
# the dense statistics below. Measured at 80% on Fashion-MNIST against the dense statistics: -0.29 points with 3
# extra epochs, -0.05 with 4.5, +0.09 with 6 (four seeds), +0.17 with 10.
MASKED_LAYER_NORM_MIN_EPOCHS = 6.0
# ... and only up to this target: at 90% removed (48 of 128 channels kept) the dense statistics won with 6 extra
# epochs on all four seeds; at 85% (56 kept) `masked` was ahead on three of four (benchmarks/README.md, "High-mid
# pass").
MASKED_LAYER_NORM_MAX_SPARSITY = 0.85
DISTILLATION_STAGES = ("finetune", "all")  # where distillation_alpha applies


@dataclass
class GOHSPConfig(TrainingArguments):
    r"""Configuration of a [`GOHSPTrainer`] run: every `TrainingArguments` field, plus the fields below.

    The run has three stages, whose lengths replace `num_train_epochs`/`max_steps`:
    head ranking, the pruning stage (`admm_epochs`: ADMM for GOHSP, the gradual schedule for SGMP, nothing for
    SOMP and random, which fine-tune for those epochs instead), and fine-tuning of the hard-pruned model
    (`finetune_epochs`).

    Parameters:
        > Method and budget

        method (`str`, defaults to `"gohsp"`): `gohsp`; `gohsp_paper`, the paper's split (graph-ranked heads at
            half the target, weight-norm columns, ADMM every 100 steps); or a baseline: `somp`, `sgmp`, `random`.
        target_sparsity (`float`, defaults to `0.5`): fraction of the whole model's parameters to remove.
        importance (`str`, defaults to `"fisher"`): how groups are scored for the allocation: `fisher` (the
            squared first-order change of the loss when the whole group goes, per calibration batch), `taylor`
            (|w * dL/dw| on calibration batches) or `norm` (squared weight norm, the paper's projection).
        importance_samples (`int`, defaults to `512`), importance_batch_size (`int`, defaults to `64`): the
            calibration images (from the training set, unshuffled) those scores are estimated on.
        importance_steps (`int`, defaults to `10`): a one-shot allocation (and ADMM's first projection) reaches
            the target in this many allocations, each rescoring the model masked by the previous one.
        head_sparsity (`float`, *optional*): remove this fraction of all heads in stage 1, before the budget is
            allocated (the paper's split). Default: for `gohsp` heads compete in the allocation like every other
            group; for `gohsp_paper` and the baselines, `target_sparsity / 2`.
        prune_hidden_size (`bool`, *optional*): also prune residual-stream channels (the model's `hidden_size`:
            embeddings, every layer norm and block, the classifier), beyond the paper. Default: on for `gohsp`,
            off for the other methods (which cannot).
        hidden_sparsity (`float`, *optional*): with `prune_hidden_size`, remove this fraction of the residual
            channels (lowest score first) before the rest of the budget is allocated. Default:
            `1 - sqrt(1 - target_sparsity)`, the fraction a uniform cut of every width would remove (0.37 at 60%,
            0.55 at 80%). Channels left to compete per parameter are never chosen: each feeds every block.
        hidden_layer_norm (`str`, *optional*): with `prune_hidden_size`, whether the pruned model's layer norms
            keep the dense model's statistics (`dense_statistics`: the export is exact) or become plain layer
            norms over the kept channels: at the hard prune (`plain`, which changes the model there), or already
            in the pruning stage: from the moment channels are masked (`masked`; with `rescaled`, their weights
            multiplied by sqrt(channels before / kept) at each cut, which keeps the size of their outputs), or
            moving there from the dense statistics step by step over the stage (`gradual`). These three make the
            export exact again and need `soft_pruning="gradual"`, whose masks zero the channels. Default, by
            budget: `masked` for `gohsp` with the gradual stage when `admm_epochs + finetune_epochs` is at least
            `MASKED_LAYER_NORM_MIN_EPOCHS` (6; plain statistics pay off only with the epochs to adapt to them)
            and `target_sparsity` is at most `MASKED_LAYER_NORM_MAX_SPARSITY` (0.85), `dense_statistics` otherwise
            (shorter budgets, budgets given in steps, higher targets, other methods).
        allocation (`str`, defaults to `"global"`): how the budget is spread: `global`, one allocation in which
            every group competes per parameter across blocks and kinds (the structure differs per block), or
            `uniform`, every block keeping the same fraction of its q/k and v dimensions and MLP neurons, all heads
            kept (as Torch-Pruning does by default); the scores then only pick which groups of a block stay.
        block_floor (`float`, defaults to `0.0`): every block keeps at least this fraction of its prunable
            parameters (of the dense block, or of its uniform share, see `block_floor_of`).
        block_floor_of (`str`, defaults to `"dense"`): what `block_floor` is a fraction of: `"dense"`, the dense
            block (a fixed floor, which makes high targets unreachable), or `"uniform"`, the block's share under a
            uniform allocation, `1 - target_sparsity` of it (scales with the target; every target stays reachable).
        normalize_block_scores (`bool`, defaults to `False`): divide every block's group scores by the block's mean
            score per parameter before the allocation compares blocks, which keeps the structure closer to uniform.
        round_to (`int`, defaults to `8`): keep q/k, v, MLP and residual sizes at multiples of this, which the
            hardware runs faster; 8 cost no measurable accuracy in the benchmark (docs/method.md). 1: any size.
        min_mlp_width (`int`, defaults to `1`): the smallest MLP width a block keeps.

        > Stage 1: head ranking

        head_ranking (`str`, defaults to `"graph"`): which heads of a block go when heads are removed: `graph`
            (the stationary distribution of a Markov chain on the heads' attention graph) or `importance`.
        ranking_samples (`int`, defaults to `512`): calibration images (from the training set, unshuffled).
        ranking_similarity (`str`, defaults to `"cosine"`): edge weight between heads, `cosine` or `kl`.
        ranking_damping (`float`, defaults to `0.85`): damping of the Markov chain.
        ranking_direction (`str`, defaults to `"keep_distinct"`): prune the most central heads
            (`keep_distinct`) or the least central (`keep_central`).
        ranking_scope (`str`, defaults to `"per_block"`): `per_block` or `global`.

        > Stage 2: the pruning stage

        soft_pruning (`str`, defaults to `"gradual"`): how `gohsp` approaches the structure during the
            `admm_epochs` of the pruning stage. `gradual` holds masks: at each of the `admm_updates` updates one
            allocation, scored on the masked model as it trains, at a sparsity rising on the cubic schedule to the
            target at the stage's last step (so the hard prune changes nothing). `admm` trains toward the
            structure (re-allocated at every update) with the ADMM penalty; `gradual_admm` does so with a target
            that rises on the cubic schedule to `target_sparsity` at 3/4 of the updates; `none` prunes at once
            (after `importance_steps` rescored allocations) and fine-tunes for the stage's epochs too. At equal
            epochs `gradual` measured best over the benchmark's two shapes (on the second one pruning at once led by
            less than the spread of its seeds; docs/method.md, "Why these defaults"). `gohsp_paper` always runs
            ADMM.
        admm_epochs (`float`, defaults to `1.0`), admm_max_steps (`int`, defaults to `-1`): the stage's length.
        admm_updates (`int`, defaults to `20`): Z/U updates (and re-allocations) over the stage, whatever its
            length; the interval between them is the stage's steps divided by this.
        admm_update_steps (`int`, *optional*): a fixed interval in optimizer steps instead (and SGMP's).
        rho (`float`, defaults to `0.05`), rho_max (`float`, defaults to `1.0`): the penalty coefficient at the
            start and its cap.
        rho_growth (`float`, *optional*): rho's factor after each update; default: the factor that brings rho
            from `rho` to `rho_max` at the last update.

        > Stage 3: fine-tuning

        finetune_epochs (`float`, defaults to `1.0`), finetune_max_steps (`int`, defaults to `-1`): its length.
        lr_scheduler_across_stages (`bool`, *optional*): one warm-up and one decay of `lr_scheduler_type` over the
            pruning stage and fine-tuning together, fine-tuning continuing at the step the pruning stage ended on
            (as a one-shot prune followed by fine-tuning has); `False`: each stage has its own. Default: on for
            `gohsp` (it measured better where `gohsp` trailed Torch-Pruning, docs/method.md), off for
            `gohsp_paper` and the baselines, and off with `reduce_lr_on_plateau`, which is not step-wise.
        carry_optimizer_state (`bool`, defaults to `False`): fine-tuning starts from the optimizer state the pruning
            stage ended in (Adam's moments of the kept weights, sliced as the export slices them) instead of a
            fresh optimizer, which moves every weight by about the full learning rate in its first steps (it
            measured neutral, docs/method.md).
        distillation_alpha (`float`, defaults to `0.0`): weight of the KL to the teacher's logits (0: off); the
            teacher is the dense model unless `GOHSPTrainer(teacher_model=...)` names another.
        distillation_temperature (`float`, defaults to `2.0`): softmax temperature of that KL.
        distillation_stages (`str`, defaults to `"finetune"`): where the KL applies: `"finetune"` (after the hard
            prune) or `"all"` (the pruning stage too, as the masks close or beside the ADMM penalty).
        finetune_with_lora (`bool`, defaults to `False`): fine-tune with LoRA adapters (PEFT) instead of all weights;
            they are merged before saving, so the saved model is a plain `GOHSPViTForImageClassification`.
        lora_r (`int`, defaults to `8`), lora_alpha (`int`, defaults to `16`), lora_dropout (`float`, defaults to
            `0.0`), lora_target_modules (`str`, defaults to `"q_proj,v_proj,fc1,fc2"`): the adapters.

        > Output

        overwrite_output_dir (`bool`, defaults to `False`): allow an `output_dir` that already holds files.
    """

    method: str = field(
        default="gohsp", metadata={"help": f"Pruning method: one of {tuple(PRUNING_METHODS)} (`methods.py`)."}
    )
    target_sparsity: float = field(
        default=0.5, metadata={"help": "Fraction of the whole model's parameters to remove, in (0, 1)."}
    )
    importance: str = field(
        default="fisher", metadata={"help": f"How groups are scored for the allocation: {IMPORTANCES}."}
    )
    importance_samples: int = field(default=512, metadata={"help": "Calibration images for the group scores."})
    importance_batch_size: int = field(default=64, metadata={"help": "Batch size of those calibration images."})
    importance_steps: int = field(
        default=10, metadata={"help": "Allocations (each rescoring the masked model) that reach a one-shot target."}
    )
    head_sparsity: float | None = field(
        default=None,
        metadata={
            "help": "Remove this fraction of all heads before the allocation (the paper's split); default: heads "
            "compete in the allocation (gohsp), target_sparsity / 2 (gohsp_paper and the baselines)."
        },
    )
    prune_hidden_size: bool | None = field(
        default=None,
        metadata={
            "help": "Also prune residual-stream channels (hidden_size), beyond the paper; default: on for gohsp."
        },
    )
    hidden_sparsity: float | None = field(
        default=None,
        metadata={
            "help": "With prune_hidden_size: remove this fraction of residual channels first; default "
            "1 - sqrt(1 - target_sparsity)."
        },
    )
    hidden_layer_norm: str | None = field(
        default=None,
        metadata={
            "help": f"Layer norms of a narrowed residual stream: {TRAINING_LAYER_NORMS} (plain: over the kept "
            "channels from the hard prune on; masked / rescaled / gradual: from the gradual stage on, so the export "
            f"stays exact); default: masked for gohsp's gradual stage with at least {MASKED_LAYER_NORM_MIN_EPOCHS:g} "
            f"epochs of pruning stage and fine-tuning together and a target of at most "
            f"{MASKED_LAYER_NORM_MAX_SPARSITY:g}, dense_statistics otherwise."
        },
    )
    allocation: str = field(
        default="global",
        metadata={"help": f"Budget spread: {ALLOCATIONS} (uniform: the same fraction of every kind in every block)."},
    )
    block_floor: float = field(
        default=0.0, metadata={"help": "Every block keeps at least this fraction of its prunable parameters."}
    )
    block_floor_of: str = field(
        default="dense",
        metadata={"help": f"What block_floor is a fraction of: {BLOCK_FLOOR_OF} (uniform: 1 - target of the block)."},
    )
    normalize_block_scores: bool = field(
        default=False, metadata={"help": "Compare blocks by scores divided by each block's mean per parameter."}
    )
    round_to: int = field(default=8, metadata={"help": "Keep q/k, v, MLP and residual sizes at multiples of this."})
    min_mlp_width: int = field(default=1, metadata={"help": "Smallest MLP width a block may keep."})
    head_ranking: str = field(default="graph", metadata={"help": f"Which heads of a block go first: {HEAD_RANKINGS}."})
    ranking_samples: int = field(default=512, metadata={"help": "Calibration images for head ranking."})
    ranking_similarity: str = field(default="cosine", metadata={"help": f"Head graph edges: {SIMILARITIES}."})
    ranking_damping: float = field(default=0.85, metadata={"help": "Damping factor of the Markov chain."})
    ranking_direction: str = field(
        default="keep_distinct", metadata={"help": f"Which heads the stationary distribution keeps: {DIRECTIONS}."}
    )
    ranking_scope: str = field(default="per_block", metadata={"help": f"Head selection scope: {SCOPES}."})
    soft_pruning: str = field(
        default="gradual", metadata={"help": f"gohsp's pruning stage: {SOFT_PRUNING} (none: prune at once)."}
    )
    admm_epochs: float = field(default=1.0, metadata={"help": "Epochs of the pruning (ADMM / SGMP) stage."})
    admm_max_steps: int = field(default=-1, metadata={"help": "If > 0, steps of the pruning stage."})
    admm_updates: int = field(default=20, metadata={"help": "Z/U updates over the pruning stage."})
    admm_update_steps: int | None = field(
        default=None, metadata={"help": "A fixed number of optimizer steps between updates, instead of admm_updates."}
    )
    rho: float = field(default=0.05, metadata={"help": "Initial ADMM penalty coefficient."})
    rho_growth: float | None = field(
        default=None, metadata={"help": "rho's factor after each update; default: reach rho_max at the last one."}
    )
    rho_max: float = field(default=1.0, metadata={"help": "Largest rho."})
    finetune_epochs: float = field(default=1.0, metadata={"help": "Epochs of fine-tuning after the hard prune."})
    finetune_max_steps: int = field(default=-1, metadata={"help": "If > 0, steps of fine-tuning."})
    lr_scheduler_across_stages: bool | None = field(
        default=None,
        metadata={
            "help": "One warm-up and one decay of lr_scheduler_type over the pruning stage and fine-tuning together "
            "(fine-tuning continues where the pruning stage stopped); False: each stage has its own. Default: on "
            "for gohsp, off for gohsp_paper and the baselines."
        },
    )
    carry_optimizer_state: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune from the optimizer state the pruning stage ended in (the kept weights' moments), "
            "not a fresh optimizer."
        },
    )
    distillation_alpha: float = field(
        default=0.0,
        metadata={"help": "Weight of distillation from the teacher (by default the dense model; 0: off)."},
    )
    distillation_temperature: float = field(default=2.0, metadata={"help": "Distillation softmax temperature."})
    distillation_stages: str = field(
        default="finetune",
        metadata={
            "help": "Where distillation applies: `finetune` (after the hard prune) or `all` (pruning stage too)."
        },
    )
    finetune_with_lora: bool = field(
        default=False, metadata={"help": "Fine-tune the pruned model with LoRA adapters, merged before saving."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: str = field(
        default="q_proj,v_proj,fc1,fc2", metadata={"help": "Comma-separated module names that get adapters."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds files."}
    )

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (self.method in PRUNING_METHODS, f"method must be one of {tuple(PRUNING_METHODS)}, got {self.method!r}."),
            (
                0 < self.target_sparsity < 1 and not math.isnan(self.target_sparsity),
                f"target_sparsity must be a fraction in (0, 1), got {self.target_sparsity}.",
            ),
            (self.importance in IMPORTANCES, f"importance must be one of {IMPORTANCES}, got {self.importance!r}."),
            (
                self.importance_samples >= 1 and self.importance_batch_size >= 1,
                "importance_samples and importance_batch_size must be >= 1.",
            ),
            (
                self.head_sparsity is None or 0 <= self.head_sparsity < 1,
                f"head_sparsity must be in [0, 1), got {self.head_sparsity}.",
            ),
            (self.importance_steps >= 1, f"importance_steps must be >= 1, got {self.importance_steps}."),
            (
                self.hidden_sparsity is None or 0 <= self.hidden_sparsity < 1,
                f"hidden_sparsity must be in [0, 1), got {self.hidden_sparsity}.",
            ),
            (
                self.hidden_layer_norm is None or self.hidden_layer_norm in TRAINING_LAYER_NORMS,
                f"hidden_layer_norm must be one of {TRAINING_LAYER_NORMS}, got {self.hidden_layer_norm!r}.",
            ),
            (
                self.hidden_layer_norm not in STAGE_LAYER_NORMS or self.soft_pruning == "gradual",
                f"hidden_layer_norm={self.hidden_layer_norm!r} needs soft_pruning='gradual' (got "
                f"{self.soft_pruning!r}): only its masks zero residual channels before the hard prune; use "
                "hidden_layer_norm='plain' instead.",
            ),
            (self.allocation in ALLOCATIONS, f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}."),
            (
                self.allocation == "global" or (self.block_floor == 0 and not self.normalize_block_scores),
                "block_floor and normalize_block_scores shape a global allocation; with allocation='uniform' "
                "leave them at 0 and False.",
            ),
            (0 <= self.block_floor < 1, f"block_floor must be in [0, 1), got {self.block_floor}."),
            (self.block_floor_of in BLOCK_FLOOR_OF, f"block_floor_of must be one of {BLOCK_FLOOR_OF}."),
            (self.round_to >= 1, f"round_to must be >= 1, got {self.round_to}."),
            (self.min_mlp_width >= 1, f"min_mlp_width must be >= 1, got {self.min_mlp_width}."),
            (self.head_ranking in HEAD_RANKINGS, f"head_ranking must be one of {HEAD_RANKINGS}."),
            (self.ranking_samples >= 1, f"ranking_samples must be >= 1, got {self.ranking_samples}."),
            (self.ranking_similarity in SIMILARITIES, f"ranking_similarity must be one of {SIMILARITIES}."),
            (0 < self.ranking_damping <= 1, f"ranking_damping must be in (0, 1], got {self.ranking_damping}."),
            (self.ranking_direction in DIRECTIONS, f"ranking_direction must be one of {DIRECTIONS}."),
            (self.ranking_scope in SCOPES, f"ranking_scope must be one of {SCOPES}."),
            (self.soft_pruning in SOFT_PRUNING, f"soft_pruning must be one of {SOFT_PRUNING}."),
            (self.admm_updates >= 1, f"admm_updates must be >= 1, got {self.admm_updates}."),
            (
                self.admm_update_steps is None or self.admm_update_steps >= 1,
                f"admm_update_steps must be >= 1, got {self.admm_update_steps}.",
            ),
            (
                self.rho > 0 and (self.rho_growth is None or self.rho_growth >= 1) and self.rho_max >= self.rho,
                "Need rho > 0, rho_growth >= 1, rho_max >= rho.",
            ),
            (
                0 <= self.distillation_alpha <= 1,
                f"distillation_alpha must be in [0, 1], got {self.distillation_alpha}.",
            ),
            (
                self.distillation_stages in DISTILLATION_STAGES,
                f"distillation_stages must be one of {DISTILLATION_STAGES}, got {self.distillation_stages!r}.",
            ),
            (self.admm_epochs >= 0 and self.finetune_epochs >= 0, "admm_epochs and finetune_epochs must be >= 0."),
            (self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.prune_hidden_size is None:  # the method's own default: only gohsp narrows the residual stream
            self.prune_hidden_size = PRUNING_METHODS[self.method].supports_hidden
        if self.hidden_layer_norm is None:  # by budget: plain statistics pay off only with the epochs to adapt
            budget = self.admm_epochs + self.finetune_epochs
            in_epochs = self.admm_max_steps <= 0 and self.finetune_max_steps <= 0
            gradual_gohsp = self.method == "gohsp" and self.soft_pruning == "gradual" and self.prune_hidden_size
            masked = gradual_gohsp and in_epochs and budget >= MASKED_LAYER_NORM_MIN_EPOCHS
            masked = masked and self.target_sparsity <= MASKED_LAYER_NORM_MAX_SPARSITY
            self.hidden_layer_norm = "masked" if masked else "dense_statistics"
        if self.lr_scheduler_across_stages is None:  # the method's own default, where the schedule is step-wise
            step_wise = self.lr_scheduler_type != SchedulerType.REDUCE_ON_PLATEAU
            self.lr_scheduler_across_stages = PRUNING_METHODS[self.method].schedule_across_stages and step_wise
