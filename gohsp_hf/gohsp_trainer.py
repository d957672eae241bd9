"""`GOHSPTrainer`: a `transformers.Trainer` that prunes a ViT/DeiT with GOHSP (or a baseline) while it trains.

`train()` runs the stages top to bottom: head ranking, the pruning stage, the hard prune, fine-tuning. What
each stage does is the business of the method object (`methods.PRUNING_METHODS[args.method]`); the algorithm
itself is plain torch (`head_ranking`, `admm`, `budget`, `export`). This class is the glue: the method's
penalty in `compute_loss`, its metrics in `log`, its state in checkpoints.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Subset
from transformers import Trainer, get_scheduler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .batch_mixing import BatchMixingMixin
from .budget import BudgetSolver
from .checkpointing import check_output_dir, find_checkpoint, load_state, save_state
from .counting import compare_speed, model_cost
from .export import export_pruned_model, save_pruned_model
from .gohsp_config import GOHSPConfig
from .hub import push_pruned_model
from .layer_norms import EXPORTED_LAYER_NORM
from .lora import lora_for_finetune, merge_lora
from .losses import distillation_loss
from .methods import PRUNING_METHODS, stage_folders
from .model_card import model_card, structure_plot, summary_table
from .model_utils import load_teacher, model_dims, model_variant, teacher_name
from .modeling_gohsp_vit import GOHSPViTForImageClassification
from .optimizer_state import load_optimizer_state, sliced_optimizer_state
from .structure import PrunedStructure, apply_masks

logger = logging.getLogger(__name__)

RESULTS_FILE = "gohsp_results.json"
LORA_BASE = "pruned_base"  # output_dir/finetune/pruned_base: the model LoRA adapters are trained on


class GOHSPTrainer(BatchMixingMixin, Trainer):
    """Prunes a `ViTForImageClassification` / `DeiTForImageClassification[WithTeacher]` with GOHSP.

    Args:
        model: the dense model.
        args: a [`GOHSPConfig`].
        calibration_dataset: labelled images for head ranking and group importance (defaults to
            `train_dataset`, read in order); give it the evaluation transform when training images are augmented.
        dataset_name: the dataset's Hub id or folder, for the model card.
        train_batch_transform: `(pixel_values, labels) -> (pixel_values, labels)` applied to every training batch
            of every stage, e.g. MixUp / CutMix (`batch_mixing.BatchMixingMixin`); soft labels flow through the
            loss, the ADMM penalty and distillation.
        teacher_model: the model distilled from when `args.distillation_alpha > 0` (in fine-tuning, and in the
            pruning stage too with `distillation_stages="all"`), in place of the dense model (the default teacher):
            a model or a Hub id / folder (loaded with `AutoModelForImageClassification`). Any module that takes
            `pixel_values` (the student's, so the same size and normalisation) and returns an output with `.logits`
            over the same labels will do, e.g. a CNN as DeiT distils from one.
        Other arguments are those of `transformers.Trainer`.

    Example:

    ```python
    >>> trainer = GOHSPTrainer(model=model, args=GOHSPConfig("out", target_sparsity=0.5),
    ...                        train_dataset=train, eval_dataset=val, processing_class=processor,
    ...                        compute_metrics=accuracy)
    >>> trainer.train()        # rank heads, ADMM, hard prune, fine-tune; saves the pruned model in out/
    >>> trainer.model          # a GOHSPViTForImageClassification
    ```
    """

    def __init__(
        self,
        model: nn.Module,
        args: GOHSPConfig,
        calibration_dataset=None,
        dataset_name: str | None = None,
        train_batch_transform=None,
        teacher_model: nn.Module | str | None = None,
        **kwargs,
    ):
        if not isinstance(args, GOHSPConfig):
            raise ValueError("GOHSPTrainer needs a GOHSPConfig as `args` (it holds the pruning settings).")
        if teacher_model is not None and not args.distillation_alpha > 0:
            raise ValueError(
                "A teacher_model was given but distillation is off: set `distillation_alpha` in GOHSPConfig "
                "(e.g. 0.5), or leave teacher_model out."
            )
        model = merge_lora(model, reason=" of the model passed to GOHSPTrainer: GOHSP prunes plain weights")
        model_variant(model)  # a clear ValueError for models we cannot prune
        # The Trainer would create the Hub repo now (failing at once without network) and push every stage's
        # checkpoints; we push the final pruned model once it is saved locally.
        self.push_final_model, args.push_to_hub = args.push_to_hub, False
        super().__init__(model=model, args=args, **kwargs)
        # Our penalty (and the pruned model's loss) are means: the Trainer must divide them by the
        # accumulation steps itself rather than scale by a token count (and by world size under DDP).
        self.model_accepts_loss_kwargs = False
        self.calibration_dataset, self.dataset_name = calibration_dataset, dataset_name
        self.train_batch_transform = train_batch_transform
        self.base_model_name = model.config.name_or_path or None
        self.dims = model_dims(model)
        self.solver = BudgetSolver.from_model(
            model, args.target_sparsity, args.min_mlp_width, args.round_to, hidden=args.prune_hidden_size
        )
        self.method = PRUNING_METHODS[args.method](self)
        self.solver.check_feasible(self.method.min_head_counts())
        self.teacher_model = load_teacher(teacher_model, model) if teacher_model is not None else None
        self.teacher: nn.Module | None = None
        self.head_mask: torch.Tensor | None = None
        self.structure: PrunedStructure | None = None
        self.stage: str | None = None
        self.last_penalty: torch.Tensor | None = None
        self.last_task_loss: torch.Tensor | None = None
        self.pruning_metrics: dict[str, float] = {}  # the method's latest metrics, merged into the next log
        self.carried_optimizer_state: dict[str, dict] | None = None  # for fine-tuning's optimizer
        self.results: dict = {}

    # ---------------------------------------------------------------- the stages, top to bottom
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Rank heads, run the pruning stage, hard prune, fine-tune, and save the pruned model.

        Args:
            resume_from_checkpoint: a checkpoint folder of this run (`output_dir/<stage>/checkpoint-N`), or
                `True` / `"last"` for the latest complete one. The run continues in that checkpoint's stage and
                ends with the same structure and weights as an uninterrupted run.

        Returns the `TrainOutput` of the fine-tuning stage.
        """
        checkpoint = find_checkpoint(self.args.output_dir, resume_from_checkpoint, stage_folders(self.args.method))
        saved = load_state(checkpoint)
        self._start(saved)
        if saved is None:
            with self._stage("ranking"):  # paper stage 1
                self.head_mask = self.method.rank_heads(self.accelerator.unwrap_model(self.model))
            self.results["head_mask"] = self.head_mask.int().tolist()
        if saved is None or saved["stage"] != "finetune":
            with self._stage("pruning"):  # paper stage 2
                model = self.accelerator.unwrap_model(self.model)
                self.method.pruning_stage(model, checkpoint, saved and saved["method"])
            self.results["before_hard_prune"] = (
                self._evaluate("before_hard_prune") if self.method.has_pruning_stage() else self.results["dense"]
            )
            with self._stage("hard_prune"):  # paper stage 3: remove the zeroed structures
                self.hard_prune()
            self.results["after_hard_prune"] = self._evaluate("hard_prune")
            checkpoint = None
        else:
            self._install_pruned_model(checkpoint, saved)
        with self._stage("finetune"):
            output = self.run_stage("finetune", *self.method.finetune_length(), [], resume=checkpoint)
        self._finish()
        return output

    def _start(self, saved: dict | None) -> None:
        """Fresh run: refuse a used output_dir, evaluate the dense model. Resumed run: restore the results."""
        if saved is None:
            check_output_dir(self.args)
        if self.teacher_model is not None:
            self.teacher = self.teacher_model.to(self.args.device).eval().requires_grad_(False)
        elif self.args.distillation_alpha > 0:  # the dense model, before any pruning
            self.teacher = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
        if saved is None:
            self.results = {"method": self.args.method, "target_sparsity": self.args.target_sparsity}
            self.results |= {"stage_seconds": {}, "dense": {**model_cost(self.model), **self._evaluate("dense")}}
            if self.teacher is not None:
                self.results["distillation"] = {
                    "teacher": teacher_name(self.teacher_model) if self.teacher_model is not None else "dense model",
                    "alpha": self.args.distillation_alpha,
                    "temperature": self.args.distillation_temperature,
                    "stages": self.args.distillation_stages,
                }
        else:
            self.results, self.head_mask = saved["results"], saved["head_mask"]

    @torch.no_grad()
    def hard_prune(self) -> PrunedStructure:
        """Set W to Proj(W), export the physically smaller model and make it the model to fine-tune."""
        args, model = self.args, self.accelerator.unwrap_model(self.model)
        self.structure = self.method.final_structure(model)
        self.method.end_pruning_stage()
        apply_masks(model, self.structure)
        provenance = {
            "method": args.method,
            "target_sparsity": args.target_sparsity,
            "measured_sparsity": self.solver.sparsity(self.structure),
            "importance": args.importance,
            "head_sparsity": self.method.head_sparsity(),
            "prune_hidden_size": args.prune_hidden_size,
            "hidden_layer_norm": args.hidden_layer_norm,
            "round_to": args.round_to,
        }
        self.results["measured_sparsity"] = provenance["measured_sparsity"]
        self.results["structure"] = self.structure.sizes()
        self.results["hidden_size"] = self.structure.hidden_size
        self.results["kept_heads"] = [layer.heads for layer in self.structure.layers]
        layer_norm = EXPORTED_LAYER_NORM[args.hidden_layer_norm]
        pruned = export_pruned_model(model, self.structure, provenance, layer_norm).to(model.device)
        if self.is_world_process_zero():  # only the main process reports; the masked model times like the dense one
            self.results["speed"] = compare_speed(model, pruned)
        if args.carry_optimizer_state and self.optimizer is not None and not args.finetune_with_lora:
            # accelerate's optimizer exposes the torch optimizer's `state`; fine-tuning's new optimizer loads it
            self.carried_optimizer_state = sliced_optimizer_state(self.optimizer, model, self.structure)
        self._use_model(pruned)
        return self.structure

    def _install_pruned_model(self, checkpoint: str, saved: dict) -> None:
        """Resuming in the fine-tuning stage: the pruned architecture comes from the checkpoint.

        With LoRA the checkpoint holds only adapters: the pruned base saved at the hard prune is loaded, wrapped
        in fresh adapters, and the Trainer then loads the checkpoint's adapter weights.
        """
        self.structure = PrunedStructure.from_dict(saved["structure"])
        source = Path(self.args.output_dir) / "finetune" / LORA_BASE if self.args.finetune_with_lora else checkpoint
        self._use_model(GOHSPViTForImageClassification.from_pretrained(source))

    def _use_model(self, model: nn.Module) -> None:
        """Make `model` (the exported pruned model) the one to fine-tune, with a new optimizer."""
        model.set_attn_implementation(self.accelerator.unwrap_model(self.model).config._attn_implementation)
        if self.args.finetune_with_lora:
            base = Path(self.args.output_dir) / "finetune" / LORA_BASE
            model = lora_for_finetune(model, self.args, base, self.is_world_process_zero())
        self.model = self.model_wrapped = model.to(self.args.device)
        self.callback_handler.model = self.model  # what callbacks get; Trainer refreshes it only when train() starts
        self.optimizer, self.lr_scheduler = None, None  # a new optimizer for the new parameters

    def _finish(self) -> None:
        """Merge LoRA, evaluate the pruned model, save it with its card and results, and push it if asked."""
        if self.args.finetune_with_lora:
            self.model = self.model_wrapped = merge_lora(self.accelerator.unwrap_model(self.model))
        self.results["pruned"] = {**model_cost(self.model), **self._evaluate("pruned")}
        self.results["achieved_sparsity"] = 1 - self.results["pruned"]["params"] / self.results["dense"]["params"]
        self.results["command"] = "python " + shlex.join(sys.argv)
        if not self.is_world_process_zero():
            return
        logger.info("GOHSP done.\n" + summary_table(self.results))
        if not self.args.should_save:
            return
        card = model_card(
            self.results, self.structure, self.base_model_name, self.dataset_name, self.results["command"]
        )
        extra = {RESULTS_FILE: json.dumps(self.results, indent=1), "README.md": card}
        extra["structure.png"] = structure_plot(self.structure)
        model = self.accelerator.unwrap_model(self.model)
        save_pruned_model(model, self.args.output_dir, self.processing_class, self.structure, extra_files=extra)
        if self.push_final_model:
            push_pruned_model(self.args.output_dir, self.args)

    # ---------------------------------------------------------------- Trainer hooks
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Task loss, distilled from the teacher in stage 3 (and in stage 2 with `distillation_stages="all"`),
        plus the method's penalty in stage 2."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self.last_task_loss = loss.detach()
        args = self.args
        distil = self.structure is not None or args.distillation_stages == "all"
        if model.training and self.teacher is not None and distil:
            with torch.no_grad():
                teacher_logits = self.teacher(pixel_values=inputs["pixel_values"]).logits
            if teacher_logits.shape != outputs.logits.shape:
                raise ValueError(
                    f"The teacher's logits have shape {tuple(teacher_logits.shape)} and the model's "
                    f"{tuple(outputs.logits.shape)}: distil from a teacher trained on the same labels."
                )
            loss = distillation_loss(
                loss, outputs.logits, teacher_logits, args.distillation_alpha, args.distillation_temperature
            )
        penalty = self.method.penalty(self.accelerator.unwrap_model(model)) if model.training else None
        if penalty is not None:
            self.last_penalty = penalty
            loss = loss + penalty
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step, stopped with a clear error when the loss is NaN or infinite."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            task_ok = self.last_task_loss is None or torch.isfinite(self.last_task_loss).all()
            if task_ok and self.last_penalty is not None and not torch.isfinite(self.last_penalty):
                cause = self.method.overflow_hint()
            else:
                cause = "the task loss diverged; lower the learning rate or set max_grad_norm"
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            kept = f"; the last good checkpoint, {last}, is kept" if last else ""
            raise FloatingPointError(
                f"GOHSP stopped at step {self.state.global_step + 1} of stage '{self.stage}': the loss is "
                f"{loss.item()}: {cause}{kept}."
            )
        return loss

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint, plus `gohsp_state.pt` (stage, head mask, the method's state, structure,
        results), written last."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            structure = self.structure.to_dict() if self.structure is not None else None
            state = {"stage": self.stage, "results": self.results, "head_mask": self.head_mask}
            save_state(folder, state | {"method": self.method.state_dict(), "structure": structure})

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Load checkpoint weights through `from_pretrained`, which maps transformers' on-disk ViT/DeiT names.

        transformers 5.24's own version loads the raw state dict with `strict=False`: every ViT encoder weight
        is then "unexpected" and silently stays at its fresh values (no key conversion to the legacy names).
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if isinstance(target, PeftModel):  # adapters only: the Trainer's own loader handles them
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        implementation = target.config._attn_implementation
        loaded = type(target).from_pretrained(resume_from_checkpoint, attn_implementation=implementation)
        target.load_state_dict(loaded.state_dict(), strict=True)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer; with `carry_optimizer_state`, fine-tuning's starts from the state the pruning
        stage ended in (set by `hard_prune`, so the next optimizer is fine-tuning's; a checkpoint it resumes from
        then replaces it, as usual)."""
        optimizer = super().create_optimizer(model)
        if self.carried_optimizer_state is not None:
            target = self.model if model is None else model
            count = load_optimizer_state(optimizer, target, self.carried_optimizer_state)
            self.results["carried_optimizer_state"] = count  # parameters that continued their state
            self.carried_optimizer_state = None
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The Trainer's scheduler for the current stage; with `lr_scheduler_across_stages`, one schedule over the
        pruning stage and fine-tuning together (its warm-up at the start of pruning, fine-tuning continuing at the
        step the pruning stage ended on, with its new optimizer)."""
        args = self.args
        both = self.method.has_pruning_stage() and self.stage in (self.method.stage_name, "finetune")
        if self.lr_scheduler is not None or not args.lr_scheduler_across_stages or not both:
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = optimizer if optimizer is not None else self.optimizer
        pruning = self.stage_steps(args.admm_epochs, args.admm_max_steps)
        total = pruning + self.stage_steps(*self.method.finetune_length())
        schedule = get_scheduler(
            args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=args.get_warmup_steps(total),
            num_training_steps=total, scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )  # fmt: skip
        if not isinstance(schedule, LambdaLR):
            raise ValueError(
                f"lr_scheduler_across_stages needs a step-wise lr_scheduler_type (linear, cosine, constant...), got "
                f"{args.lr_scheduler_type!r}; set lr_scheduler_across_stages=False to use it."
            )
        if self.stage == "finetune":  # the same curve, shifted by the steps of the pruning stage
            schedule = LambdaLR(optimizer, [lambda step, f=f: f(step + pruning) for f in schedule.lr_lambdas])
        self.lr_scheduler, self._created_lr_scheduler = schedule, True
        return schedule

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The Trainer's log, with the method's latest metrics (ADMM residual, rho, sparsity...) merged in."""
        if self.pruning_metrics and "loss" in logs:
            logs.update(self.pruning_metrics)
            self.pruning_metrics.clear()  # the callbacks hold this very dict
        super().log(logs, start_time)

    # ---------------------------------------------------------------- what the methods call
    def run_stage(self, name: str, epochs: float, max_steps: int, callbacks: list, resume: str | None = None):
        """One `Trainer.train()` over the current model, with its own optimizer and checkpoint folder."""
        args, root, lengths = self.args, self.args.output_dir, (self.args.num_train_epochs, self.args.max_steps)
        if epochs <= 0 and max_steps <= 0:
            return None
        self.stage, self.optimizer, self.lr_scheduler = name, None, None
        args.num_train_epochs, args.max_steps, args.output_dir = epochs, max_steps, os.path.join(root, name)
        for callback in callbacks:
            self.add_callback(callback)
        try:
            if self.is_world_process_zero():
                length = f"{max_steps} steps" if max_steps > 0 else f"{epochs:g} epochs"
                logger.info(f"GOHSP stage '{name}': {length}, target sparsity {args.target_sparsity:.2f}")
            return super().train(resume_from_checkpoint=resume)
        finally:
            self.stage = None
            # Each stage starts a fresh TrainerState: keep its logs (ADMM residuals...) for the results file.
            self.results.setdefault("log_history", {})[name] = list(self.state.log_history)
            for callback in callbacks:
                self.remove_callback(callback)
            args.output_dir, (args.num_train_epochs, args.max_steps) = root, lengths  # the user's args, unchanged

    def stage_steps(self, epochs: float, max_steps: int) -> int:
        """Optimizer steps of a stage of `epochs` (or `max_steps`, when positive)."""
        if max_steps > 0:
            return max_steps
        batches = len(self.get_train_dataloader())
        return max(1, math.ceil(epochs * batches / self.args.gradient_accumulation_steps))

    def calibration_batches(self) -> DataLoader:
        """The calibration images (by default the training set), in order and the same on every process."""
        return DataLoader(
            self._calibration_dataset(),
            batch_size=self.args.per_device_eval_batch_size,
            shuffle=False,
            collate_fn=self.data_collator,
        )

    def importance_batches(self, offset: int = 0) -> DataLoader:
        """`importance_samples` labelled calibration images, the `offset`-th such window of the calibration set
        (ADMM takes a fresh one at every update), in order and the same on every process."""
        dataset, size = self._calibration_dataset(), self.args.importance_samples
        start = (offset * size) % len(dataset)
        indices = [(start + i) % len(dataset) for i in range(min(size, len(dataset)))]
        return DataLoader(
            Subset(dataset, indices), batch_size=self.args.importance_batch_size, collate_fn=self.data_collator
        )

    def _calibration_dataset(self):
        return self.calibration_dataset if self.calibration_dataset is not None else self.train_dataset

    # ---------------------------------------------------------------- bookkeeping
    def _evaluate(self, stage: str) -> dict:
        if self.eval_dataset is None or self.compute_metrics is None:
            return {}
        metrics = self.evaluate(metric_key_prefix=f"{stage}_eval")
        dropped = ("runtime", "per_second", "preparation_time", "epoch")
        return {k.removeprefix(f"{stage}_eval_"): v for k, v in metrics.items() if not k.endswith(dropped)}

    @contextmanager
    def _stage(self, name: str):
        """Times a stage; a resumed stage adds to the time spent before the interruption."""
        start = time.perf_counter()
        yield
        seconds = self.results["stage_seconds"]
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
