"""`GOHSPTrainer`: a `transformers.Trainer` that prunes a ViT/DeiT with GOHSP (or a baseline) while it trains.

`train()` runs the three stages top to bottom:

1. head ranking (graph + Markov chain for GOHSP; weight norm for SOMP/SGMP; random for `random`);
2. the pruning stage: ADMM soft pruning (GOHSP) or the gradual schedule (SGMP), `admm_epochs` long;
3. the hard prune (export to a physically smaller `GOHSPViTForImageClassification`) and fine-tuning.

The algorithm lives in plain-torch modules (`head_ranking`, `admm`, `budget`, `export`); this class wires them
to the Trainer: the ADMM penalty in `compute_loss`, updates in callbacks, metrics in `log`.
"""

from __future__ import annotations

import copy
import fnmatch
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
from huggingface_hub import create_repo, upload_folder
from peft import PeftModel
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .admm import ADMMState, group_scores, project, prunable_parameters
from .baselines import magnitude_head_mask, random_group_scores, random_head_mask
from .budget import BudgetSolver
from .callbacks import ADMMCallback, GradualPruningCallback
from .counting import compare_speed, model_cost
from .export import export_pruned_model, save_pruned_model
from .gohsp_config import GOHSPConfig
from .head_ranking import rank_heads
from .lora import add_lora, merge_lora
from .model_card import model_card, structure_plot, summary_table
from .model_utils import model_dims, model_variant
from .modeling_gohsp_vit import GOHSPViTForImageClassification
from .structure import PrunedStructure, apply_masks

logger = logging.getLogger(__name__)

RESULTS_FILE = "gohsp_results.json"
GOHSP_STATE = "gohsp_state.pt"
LORA_BASE = "pruned_base"  # output_dir/finetune/pruned_base: the model LoRA adapters are trained on
# What a Hub user of the pruned model needs (top-level files only; stage checkpoints stay local).
HUB_PATTERNS = ("*.json", "*.safetensors", "*.py", "README.md", "*.png")


class GOHSPTrainer(Trainer):
    """Prunes a `ViTForImageClassification` / `DeiTForImageClassification[WithTeacher]` with GOHSP.

    Args:
        model: the dense model.
        args: a [`GOHSPConfig`].
        calibration_dataset: images for head ranking (defaults to `train_dataset`, read in order).
        dataset_name: the dataset's Hub id or folder, for the model card.
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
        self, model: nn.Module, args: GOHSPConfig, calibration_dataset=None, dataset_name: str | None = None, **kwargs
    ):
        if not isinstance(args, GOHSPConfig):
            raise ValueError("GOHSPTrainer needs a GOHSPConfig as `args` (it holds the pruning settings).")
        model = merge_lora(model, reason=" of the model passed to GOHSPTrainer: GOHSP prunes plain weights")
        model_variant(model)  # a clear ValueError for models we cannot prune
        # The Trainer would create the Hub repo now (failing at once without network) and push every stage's
        # checkpoints; we push the final pruned model once it is saved locally (`push_to_hub` below).
        self.push_final_model, args.push_to_hub = args.push_to_hub, False
        super().__init__(model=model, args=args, **kwargs)
        # Our penalty (and the pruned model's loss) are means: the Trainer must divide them by the
        # accumulation steps itself rather than scale by a token count (HF_NOTES item 4).
        self.model_accepts_loss_kwargs = False
        self.calibration_dataset, self.dataset_name = calibration_dataset, dataset_name
        self.base_model_name = model.config.name_or_path or None
        self.dims = model_dims(model)
        self.solver = BudgetSolver.from_model(model, args.target_sparsity, args.min_mlp_width, args.round_to)
        self.solver.check_feasible(self._head_counts_after_ranking())
        self.admm: ADMMState | None = None
        self.gradual: GradualPruningCallback | None = None
        self.teacher: nn.Module | None = None
        self.head_mask: torch.Tensor | None = None
        self.structure: PrunedStructure | None = None
        self.head_ranking = None
        self.stage: str | None = None
        self.last_penalty: torch.Tensor | None = None
        self.last_task_loss: torch.Tensor | None = None
        self.pruning_metrics: dict[str, float] = {}
        self.results: dict = {}

    # ---------------------------------------------------------------- the three stages
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Rank heads, run the pruning stage, hard prune, fine-tune, and save the pruned model.

        Args:
            resume_from_checkpoint: a checkpoint folder of this run (`output_dir/<stage>/checkpoint-N`), or
                `True` / `"last"` for the latest complete one. The run continues in that checkpoint's stage and
                ends with the same structure and weights as an uninterrupted run.

        Returns the `TrainOutput` of the fine-tuning stage.
        """
        args, root = self.args, self.args.output_dir
        checkpoint = self._find_checkpoint(resume_from_checkpoint)
        saved = torch.load(Path(checkpoint) / GOHSP_STATE, weights_only=False) if checkpoint else None
        if saved is None:
            check_output_dir(args)
        if args.distillation_alpha > 0:  # the dense model, before any pruning
            self.teacher = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)

        if saved is None:
            self.results = {"method": args.method, "target_sparsity": args.target_sparsity, "stage_seconds": {}}
            self.results["dense"] = {**model_cost(self.model), **self._evaluate("dense")}
            with self._stage("ranking"):  # paper stage 1
                self.head_mask = self.rank_heads()
        else:
            self.results, self.head_mask = saved["results"], saved["head_mask"]
        if saved is None or saved["stage"] != "finetune":
            with self._stage("pruning"):  # paper stage 2
                self._pruning_stage(checkpoint, saved)
            with self._stage("hard_prune"):  # paper stage 3: remove the zeroed structures
                self.hard_prune()
            self.results["after_hard_prune"] = self._evaluate("hard_prune")
            checkpoint = None
        else:
            self._install_pruned_model(checkpoint, saved)
        with self._stage("finetune"):
            epochs, steps = args.finetune_epochs, args.finetune_max_steps
            if args.method in ("somp", "random"):  # no pruning stage: fine-tune for its epochs too
                epochs, steps = epochs + args.admm_epochs, _add_steps(steps, args.admm_max_steps)
            output = self._run_stage("finetune", epochs, steps, [], resume=checkpoint)
        if args.finetune_with_lora:
            self.model = self.model_wrapped = merge_lora(self.accelerator.unwrap_model(self.model))
        self.results["pruned"] = {**model_cost(self.model), **self._evaluate("pruned")}
        self._save_final(root)
        return output

    def rank_heads(self) -> torch.Tensor:
        """Stage 1: the (layers, heads) mask of kept heads, by the method's criterion."""
        args, model = self.args, self.accelerator.unwrap_model(self.model)
        num_pruned = self._num_pruned_heads()
        if args.method == "gohsp":
            self.head_ranking = rank_heads(
                model,
                self._calibration_batches(),
                head_sparsity=num_pruned / (self.dims.num_layers * self.dims.num_heads),
                num_samples=args.ranking_samples,
                similarity=args.ranking_similarity,
                damping=args.ranking_damping,
                direction=args.ranking_direction,
                scope=args.ranking_scope,
                progress=not args.disable_tqdm and self.is_world_process_zero(),
            )
            self.results["head_scores"] = self.head_ranking.scores.tolist()
            mask = self.head_ranking.mask
        elif args.method == "random":
            mask = random_head_mask(self.dims, num_pruned, args.seed, args.ranking_scope)
        else:
            mask = magnitude_head_mask(model, num_pruned, args.ranking_scope)
        self.results["head_mask"] = mask.int().tolist()
        return mask

    def _pruning_stage(self, checkpoint: str | None = None, saved: dict | None = None) -> None:
        """Stage 2: ADMM (GOHSP) or the cubic gradual schedule (SGMP); nothing for SOMP and random."""
        args = self.args
        if args.method == "gohsp":
            model = self.accelerator.unwrap_model(self.model)
            self.admm = ADMMState(model, self.head_mask, self.solver, args.rho, args.rho_growth, args.rho_max)
            if saved is not None:
                self.admm.load_state_dict(saved["admm"])
            else:
                self.results["admm_initial"] = self.admm.metrics(model)
                self.pruning_metrics.update(self.results["admm_initial"])  # goes out with the first log
            callback = ADMMCallback(self.admm, args.admm_update_steps, self.pruning_metrics)
            self._run_stage("admm", args.admm_epochs, args.admm_max_steps, [callback], resume=checkpoint)
            self.results["admm_final"] = self.admm.metrics(model)
            self.admm = None  # the penalty stops here
        elif args.method == "sgmp":
            total = self._stage_steps(args.admm_epochs, args.admm_max_steps)
            self.gradual = GradualPruningCallback(
                lambda model, sparsity: self._magnitude_structure(model, sparsity),
                args.target_sparsity,
                total,
                args.admm_update_steps,
                self.pruning_metrics,
            )
            if saved is not None and saved["gradual_structure"] is not None:
                self.gradual.restore(PrunedStructure.from_dict(saved["gradual_structure"]), self.model)
            self._run_stage("sgmp", args.admm_epochs, args.admm_max_steps, [self.gradual], resume=checkpoint)
            self.gradual = None

    @torch.no_grad()
    def hard_prune(self) -> PrunedStructure:
        """Set W to Proj(W), export the physically smaller model and make it the model to fine-tune."""
        args, model = self.args, self.accelerator.unwrap_model(self.model)
        if args.method == "random":
            self.structure = self.solver.solve(random_group_scores(self.dims, args.seed), self.head_mask)
        else:
            weights = {name: p.detach() for name, p in prunable_parameters(model).items()}
            _, self.structure = project(weights, model, self.head_mask, self.solver)
        apply_masks(model, self.structure)
        provenance = {
            "method": args.method,
            "target_sparsity": args.target_sparsity,
            "measured_sparsity": self.solver.sparsity(self.structure),
            "head_sparsity": args.head_sparsity,
            "round_to": args.round_to,
        }
        self.results["measured_sparsity"] = provenance["measured_sparsity"]
        self.results["structure"] = self.structure.sizes()
        pruned = export_pruned_model(model, self.structure, provenance).to(model.device)
        if self.is_world_process_zero():  # only the main process reports; the masked model times like the dense one
            self.results["speed"] = compare_speed(model, pruned, batch_size=min(args.per_device_eval_batch_size, 32))
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
        args = self.args
        model.set_attn_implementation(self.accelerator.unwrap_model(self.model).config._attn_implementation)
        if args.finetune_with_lora:
            base = Path(args.output_dir) / "finetune" / LORA_BASE
            if self.is_world_process_zero() and not (base / "config.json").exists():
                save_pruned_model(model, base)  # adapters-only checkpoints need this base to resume
            targets = [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]
            model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, targets)
        self.model = self.model_wrapped = model.to(args.device)
        self.optimizer, self.lr_scheduler = None, None  # a new optimizer for the new parameters

    # ---------------------------------------------------------------- Trainer hooks
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Task loss, plus the ADMM penalty in stage 2, or distillation from the dense model in stage 3."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self.last_task_loss = loss.detach()
        if model.training and self.admm is not None:
            self.last_penalty = self.admm.penalty(self.accelerator.unwrap_model(model))
            loss = loss + self.last_penalty
        elif model.training and self.teacher is not None and self.structure is not None:
            loss = self._distillation_loss(loss, outputs.logits, inputs)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step, stopped with a clear error when the loss is NaN or infinite."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            step = self.state.global_step + 1
            task_ok = self.last_task_loss is None or torch.isfinite(self.last_task_loss).all()
            if task_ok and self.last_penalty is not None and not torch.isfinite(self.last_penalty):
                cause = (
                    f"the ADMM penalty overflowed (rho = {self.admm.rho:g}); lower rho_max or rho_growth, or "
                    "lengthen admm_update_steps so the weights can follow Z"
                )
            else:
                cause = "the task loss diverged; lower the learning rate or set max_grad_norm"
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            kept = f"; the last good checkpoint, {last}, is kept" if last else ""
            raise FloatingPointError(
                f"GOHSP stopped at step {step} of stage '{self.stage}': the loss is {loss.item()}: {cause}{kept}."
            )
        return loss

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint, plus `gohsp_state.pt` (stage, head mask, Z, U, rho, structure, results).

        `gohsp_state.pt` is written last, through a rename: a checkpoint that has it is complete.
        """
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        state = {
            "stage": self.stage,
            "results": self.results,
            "head_mask": self.head_mask,
            "admm": self.admm.state_dict() if self.admm is not None else None,
            "gradual_structure": self.gradual.structure.to_dict() if self.gradual and self.gradual.structure else None,
            "structure": self.structure.to_dict() if self.structure is not None else None,
        }
        torch.save(state, folder / f".{GOHSP_STATE}.tmp")
        os.replace(folder / f".{GOHSP_STATE}.tmp", folder / GOHSP_STATE)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Load checkpoint weights through `from_pretrained`, which maps transformers' on-disk ViT/DeiT names.

        transformers 5.24's own version loads the raw state dict with `strict=False`: every ViT encoder weight
        is then "unexpected" and silently stays at its fresh values (HF_NOTES item 3).
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if isinstance(target, PeftModel):  # adapters only: the Trainer's own loader handles them
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        loaded = type(target).from_pretrained(
            resume_from_checkpoint, attn_implementation=target.config._attn_implementation
        )
        target.load_state_dict(loaded.state_dict(), strict=True)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The Trainer's log, with the latest ADMM / SGMP metrics (residual, rho, sparsity) merged in."""
        if self.pruning_metrics and "loss" in logs:
            logs.update(self.pruning_metrics)
            self.pruning_metrics.clear()  # the callbacks hold this very dict
        super().log(logs, start_time)

    # ---------------------------------------------------------------- helpers
    def _run_stage(self, name: str, epochs: float, max_steps: int, callbacks: list, resume: str | None = None):
        """One `Trainer.train()` over the current model, with its own optimizer and checkpoint folder."""
        args, root, lengths = self.args, self.args.output_dir, (self.args.num_train_epochs, self.args.max_steps)
        if epochs <= 0 and max_steps <= 0:
            return None
        self.stage = name
        args.num_train_epochs, args.max_steps = epochs, max_steps
        args.output_dir = os.path.join(root, name)
        self.optimizer, self.lr_scheduler = None, None
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

    def _find_checkpoint(self, resume: str | bool | None) -> str | None:
        """The checkpoint folder to resume from: the given one, or for `True`/`"last"` the newest complete one."""
        if not resume:
            return None
        if resume is True or resume == "last":
            stages = ("finetune", "admm", "sgmp")  # newest stage first
            for stage in stages:
                folder = Path(self.args.output_dir) / stage
                found = sorted(
                    folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*/{GOHSP_STATE}"),
                    key=lambda p: int(p.parent.name.split("-")[-1]),
                )
                if found:
                    return str(found[-1].parent)
            raise ValueError(
                f"No complete GOHSP checkpoint in {self.args.output_dir} (looked in {', '.join(stages)}/checkpoint-*); "
                "start the run without resume_from_checkpoint, or set save_strategy/save_steps so checkpoints are written."
            )
        if not (Path(resume) / GOHSP_STATE).exists():
            raise ValueError(
                f"{resume} is not a complete GOHSP checkpoint (it has no {GOHSP_STATE}); pass a folder "
                "output_dir/<stage>/checkpoint-N written by GOHSPTrainer, or True for the latest."
            )
        return str(resume)

    def _stage_steps(self, epochs: float, max_steps: int) -> int:
        if max_steps > 0:
            return max_steps
        batches = len(self.get_train_dataloader())
        return max(1, math.ceil(epochs * batches / self.args.gradient_accumulation_steps))

    def _magnitude_structure(self, model: nn.Module, sparsity: float) -> PrunedStructure:
        """SGMP's structure at an intermediate sparsity: heads and groups by weight norm."""
        args = self.args
        solver = BudgetSolver.from_model(model, sparsity, args.min_mlp_width, args.round_to)
        fraction = sparsity / args.target_sparsity
        mask = magnitude_head_mask(model, round(self._num_pruned_heads() * fraction), args.ranking_scope)
        weights = {name: p.detach() for name, p in prunable_parameters(model).items()}
        return solver.solve(group_scores(weights, model, mask), mask)

    def _num_pruned_heads(self) -> int:
        total = self.dims.num_layers * self.dims.num_heads
        return min(round(self.args.head_sparsity * total), self.dims.num_layers * (self.dims.num_heads - 1))

    def _head_counts_after_ranking(self) -> list[int]:
        """Heads per block after stage 1, for the feasibility check (per block, the fewest a block may keep)."""
        pruned = self._num_pruned_heads()
        return [max(1, self.dims.num_heads - math.ceil(pruned / self.dims.num_layers))] * self.dims.num_layers

    def _calibration_batches(self):
        """The first `ranking_samples` images, in order and the same on every process."""
        dataset = self.calibration_dataset if self.calibration_dataset is not None else self.train_dataset
        return DataLoader(
            dataset, batch_size=self.args.per_device_eval_batch_size, shuffle=False, collate_fn=self.data_collator
        )

    def _distillation_loss(self, loss, logits, inputs):
        """(1 - alpha) * task loss + alpha * T^2 * KL(teacher || student), on temperature-softened logits."""
        alpha, temperature = self.args.distillation_alpha, self.args.distillation_temperature
        with torch.no_grad():
            teacher_logits = self.teacher(pixel_values=inputs["pixel_values"]).logits
        kl = nn.functional.kl_div(
            nn.functional.log_softmax(logits / temperature, dim=-1),
            nn.functional.log_softmax(teacher_logits / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return (1 - alpha) * loss + alpha * temperature**2 * kl

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

    def _save_final(self, root: str) -> None:
        """Save the pruned model, its processor, the structure and the results in `output_dir`."""
        self.results["achieved_sparsity"] = 1 - self.results["pruned"]["params"] / self.results["dense"]["params"]
        if self.head_ranking is not None:
            self.results["ranking_iterations"] = self.head_ranking.iterations
        self.results["command"] = "python " + shlex.join(sys.argv)
        if not self.is_world_process_zero():
            return
        logger.info("GOHSP done.\n" + summary_table(self.results))
        if not self.args.should_save:
            return
        card = model_card(
            self.results, self.structure, self.base_model_name, self.dataset_name, self.results["command"]
        )
        extra = {
            RESULTS_FILE: json.dumps(self.results, indent=1),
            "README.md": card,
            "structure.png": structure_plot(self.structure),
        }
        save_pruned_model(
            self.accelerator.unwrap_model(self.model),
            root,
            image_processor=self.processing_class,
            structure=self.structure,
            extra_files=extra,
        )
        if self.push_final_model:
            self.push_pruned_model(root)

    def push_pruned_model(self, folder: str) -> None:
        """Upload the saved pruned model (weights, config, code, processor, structure, results) to the Hub.

        Raises a `RuntimeError` in one sentence when the upload fails; the local save is complete by then.
        """
        repo_id = self.args.hub_model_id or Path(folder).name
        try:
            repo_id = create_repo(
                repo_id, token=self.args.hub_token, private=self.args.hub_private_repo, exist_ok=True
            ).repo_id
            upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                allow_patterns=hub_files(folder) + checkpoint_patterns(self.args),
                token=self.args.hub_token,
                revision=self.args.hub_revision,
                commit_message="Upload GOHSP-pruned model",
            )
        except Exception as error:  # network, auth and offline-mode errors share no base class in huggingface_hub
            raise RuntimeError(
                f"The pruned model is saved in {folder}, but pushing it to the Hub as {repo_id} failed "
                f"({type(error).__name__}: {error}); check the network and your token, then run "
                f"`hf upload {repo_id} {folder}`."
            ) from error


def check_output_dir(args: GOHSPConfig) -> None:
    """Refuse an `output_dir` that already holds files, unless `overwrite_output_dir` is set."""
    path = Path(args.output_dir)
    if path.is_dir() and any(path.iterdir()) and not args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {args.output_dir} already holds files, perhaps from a different run. Choose another "
            "output_dir, or pass --overwrite_output_dir to write into it anyway."
        )


def _add_steps(a: int, b: int) -> int:
    """Sum of two stage lengths in steps, where -1 means "use epochs"."""
    return a + b if a > 0 and b > 0 else -1


def checkpoint_patterns(args: GOHSPConfig) -> list[str]:
    """Stage checkpoints are uploaded only when asked for, with `--hub_strategy all_checkpoints`."""
    if args.hub_strategy != "all_checkpoints":
        return []
    return [f"{stage}/{PREFIX_CHECKPOINT_DIR}-*/*" for stage in ("admm", "sgmp", "finetune")]


def hub_files(folder: str | os.PathLike) -> list[str]:
    """The files of a saved pruned model folder that `push_to_hub` uploads (no sub-folders, no checkpoints)."""
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in HUB_PATTERNS)
    )
