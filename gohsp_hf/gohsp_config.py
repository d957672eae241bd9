"""`GOHSPConfig`: the `TrainingArguments` of a GOHSP pruning run, plus the method's knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .head_ranking import DIRECTIONS, SCOPES, SIMILARITIES
from .methods import PRUNING_METHODS


@dataclass
class GOHSPConfig(TrainingArguments):
    r"""Configuration of a [`GOHSPTrainer`] run: every `TrainingArguments` field, plus the fields below.

    The run has three stages, whose lengths replace `num_train_epochs`/`max_steps`:
    head ranking, the pruning stage (`admm_epochs`: ADMM for GOHSP, the gradual schedule for SGMP, nothing for
    SOMP and random, which fine-tune for those epochs instead), and fine-tuning of the hard-pruned model
    (`finetune_epochs`).

    Parameters:
        > Method and budget

        method (`str`, defaults to `"gohsp"`): `gohsp`, or a baseline: `somp`, `sgmp`, `random`.
        target_sparsity (`float`, defaults to `0.5`): fraction of the whole model's parameters to remove.
        head_sparsity (`float`, *optional*): fraction of all heads to remove; defaults to `target_sparsity / 2`.
        round_to (`int`, defaults to `1`): keep q/k, v and MLP sizes at multiples of this (e.g. 8) for speed.
        min_mlp_width (`int`, defaults to `1`): the smallest MLP width a block keeps.

        > Stage 1: head ranking

        ranking_samples (`int`, defaults to `512`): calibration images (from the training set, unshuffled).
        ranking_similarity (`str`, defaults to `"cosine"`): edge weight between heads, `cosine` or `kl`.
        ranking_damping (`float`, defaults to `0.85`): damping of the Markov chain.
        ranking_direction (`str`, defaults to `"keep_distinct"`): prune the most central heads
            (`keep_distinct`) or the least central (`keep_central`).
        ranking_scope (`str`, defaults to `"per_block"`): `per_block` or `global`.

        > Stage 2: ADMM

        admm_epochs (`float`, defaults to `1.0`), admm_max_steps (`int`, defaults to `-1`): its length.
        admm_update_steps (`int`, defaults to `100`): optimizer steps between Z/U updates. W needs steps to move
            toward Z - U between updates (with Adam a weight moves about `learning_rate` per step); watch
            `admm_residual` fall. With a high learning rate a short interval works (10 steps at 3e-3), with a low one
            it must be longer (50 beat 10 at 5e-4); `benchmarks/README.md` has the measurements.
        rho (`float`, defaults to `0.05`), rho_growth (`float`, defaults to `1.3`), rho_max (`float`,
            defaults to `1.0`): the penalty coefficient, its factor after each update, and its cap.

        > Stage 3: fine-tuning

        finetune_epochs (`float`, defaults to `1.0`), finetune_max_steps (`int`, defaults to `-1`): its length.
        distillation_alpha (`float`, defaults to `0.0`): weight of the KL to the dense model's logits (0: off).
        distillation_temperature (`float`, defaults to `2.0`): softmax temperature of that KL.
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
    head_sparsity: float | None = field(
        default=None, metadata={"help": "Fraction of all heads to remove; default: target_sparsity / 2."}
    )
    round_to: int = field(default=1, metadata={"help": "Keep q/k, v and MLP sizes at multiples of this."})
    min_mlp_width: int = field(default=1, metadata={"help": "Smallest MLP width a block may keep."})
    ranking_samples: int = field(default=512, metadata={"help": "Calibration images for head ranking."})
    ranking_similarity: str = field(default="cosine", metadata={"help": f"Head graph edges: {SIMILARITIES}."})
    ranking_damping: float = field(default=0.85, metadata={"help": "Damping factor of the Markov chain."})
    ranking_direction: str = field(
        default="keep_distinct", metadata={"help": f"Which heads the stationary distribution keeps: {DIRECTIONS}."}
    )
    ranking_scope: str = field(default="per_block", metadata={"help": f"Head selection scope: {SCOPES}."})
    admm_epochs: float = field(default=1.0, metadata={"help": "Epochs of the pruning (ADMM / SGMP) stage."})
    admm_max_steps: int = field(default=-1, metadata={"help": "If > 0, steps of the pruning stage."})
    admm_update_steps: int = field(
        default=100,
        metadata={"help": "Optimizer steps between ADMM Z/U updates; W must get close to Z - U in that time."},
    )
    rho: float = field(default=0.05, metadata={"help": "Initial ADMM penalty coefficient."})
    rho_growth: float = field(default=1.3, metadata={"help": "Factor applied to rho after each ADMM update."})
    rho_max: float = field(default=1.0, metadata={"help": "Largest rho."})
    finetune_epochs: float = field(default=1.0, metadata={"help": "Epochs of fine-tuning after the hard prune."})
    finetune_max_steps: int = field(default=-1, metadata={"help": "If > 0, steps of fine-tuning."})
    distillation_alpha: float = field(
        default=0.0, metadata={"help": "Weight of distillation from the dense model during fine-tuning (0: off)."}
    )
    distillation_temperature: float = field(default=2.0, metadata={"help": "Distillation softmax temperature."})
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
        if self.head_sparsity is None:
            self.head_sparsity = self.target_sparsity / 2
        checks = [
            (self.method in PRUNING_METHODS, f"method must be one of {tuple(PRUNING_METHODS)}, got {self.method!r}."),
            (
                0 < self.target_sparsity < 1 and not math.isnan(self.target_sparsity),
                f"target_sparsity must be a fraction in (0, 1), got {self.target_sparsity}.",
            ),
            (0 <= self.head_sparsity < 1, f"head_sparsity must be in [0, 1), got {self.head_sparsity}."),
            (self.round_to >= 1, f"round_to must be >= 1, got {self.round_to}."),
            (self.min_mlp_width >= 1, f"min_mlp_width must be >= 1, got {self.min_mlp_width}."),
            (self.ranking_samples >= 1, f"ranking_samples must be >= 1, got {self.ranking_samples}."),
            (self.ranking_similarity in SIMILARITIES, f"ranking_similarity must be one of {SIMILARITIES}."),
            (0 < self.ranking_damping <= 1, f"ranking_damping must be in (0, 1], got {self.ranking_damping}."),
            (self.ranking_direction in DIRECTIONS, f"ranking_direction must be one of {DIRECTIONS}."),
            (self.ranking_scope in SCOPES, f"ranking_scope must be one of {SCOPES}."),
            (self.admm_update_steps >= 1, f"admm_update_steps must be >= 1, got {self.admm_update_steps}."),
            (
                self.rho > 0 and self.rho_growth >= 1 and self.rho_max >= self.rho,
                "Need rho > 0, rho_growth >= 1, rho_max >= rho.",
            ),
            (
                0 <= self.distillation_alpha <= 1,
                f"distillation_alpha must be in [0, 1], got {self.distillation_alpha}.",
            ),
            (self.admm_epochs >= 0 and self.finetune_epochs >= 0, "admm_epochs and finetune_epochs must be >= 0."),
            (self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
