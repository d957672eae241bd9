"""LoRA for the recovery fine-tune of a pruned model, and merging adapters back into plain weights (PEFT)."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from .export import save_pruned_model

logger = logging.getLogger(__name__)


def add_lora(
    model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None
) -> PeftModel:
    """Wrap a (pruned) ViT in LoRA adapters; the classifier head(s) stay fully trainable.

    transformers 5.x names the ViT projections `q_proj`/`k_proj`/`v_proj`/`o_proj` and `fc1`/`fc2` (the v4 names
    `query`/`value` match nothing). LoRA wraps each Linear at its own pruned shape.
    """
    heads = ["cls_classifier", "distillation_classifier"] if hasattr(model, "cls_classifier") else ["classifier"]
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or ["q_proj", "v_proj", "fc1", "fc2"],
        modules_to_save=heads,
    )
    return get_peft_model(model, config)


def merge_lora(model: nn.Module, reason: str = "") -> nn.Module:
    """`merge_and_unload()` for a `PeftModel` (a plain model again, same logits); other models are returned as is."""
    if not isinstance(model, PeftModel):
        return model
    logger.info(f"Merging the LoRA adapters into the weights{reason}.")
    return model.merge_and_unload()


def lora_for_finetune(model: nn.Module, args, base_dir: Path, is_main_process: bool) -> PeftModel:
    """Wrap the hard-pruned `model` in the adapters of `args` (`lora_r`, `lora_alpha`, `lora_dropout`,
    `lora_target_modules`), after saving it in `base_dir`: adapter-only checkpoints need that base to resume."""
    if is_main_process and not (base_dir / "config.json").exists():
        save_pruned_model(model, base_dir)
    targets = [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]
    return add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, targets)
