"""Losses of the fine-tuning stage beyond the model's own: distillation from the dense model."""

from __future__ import annotations

import torch
from torch import nn


def distillation_loss(
    loss: torch.Tensor, logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """`(1 - alpha) * loss + alpha * T^2 * KL(teacher || student)`, on temperature-softened logits (Hinton et al.)."""
    kl = nn.functional.kl_div(
        nn.functional.log_softmax(logits / temperature, dim=-1),
        nn.functional.log_softmax(teacher_logits / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return (1 - alpha) * loss + alpha * temperature**2 * kl


def soft_target_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy against soft targets (rows summing to 1, e.g. from MixUp / CutMix), mean over the batch.

    `label_smoothing` is applied to the targets here, once: `(1 - eps) * targets + eps / num_classes`, the same
    smoothing `TrainingArguments.label_smoothing_factor` gives hard labels.
    """
    if label_smoothing > 0:
        targets = (1 - label_smoothing) * targets + label_smoothing / targets.shape[-1]
    return -(targets * nn.functional.log_softmax(logits, dim=-1)).sum(-1).mean()
