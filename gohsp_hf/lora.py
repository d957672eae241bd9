"""LoRA for the recovery fine-tune of a pruned model, and merging adapters back into plain weights (PEFT)."""

from __future__ import annotations

import logging

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

logger = logging.getLogger(__name__)


def add_lora(
    model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None
) -> PeftModel:
    """Wrap a (pruned) ViT in LoRA adapters; the classifier head(s) stay fully trainable.

    transformers 5.x names the ViT projections `q_proj`/`k_proj`/`v_proj`/`o_proj` and `fc1`/`fc2` (the v4 names
    `query`/`value` match nothing, HF_NOTES item 12). LoRA wraps each Linear at its own pruned shape.
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
