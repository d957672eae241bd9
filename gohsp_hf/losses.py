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
