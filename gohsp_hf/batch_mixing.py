"""Batch-level augmentation (MixUp / CutMix) for Trainers: soft labels through the loss, hard labels elsewhere."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .losses import soft_target_cross_entropy

BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class BatchMixingMixin:
    """A `transformers.Trainer` mixin: `train_batch_transform(pixel_values, labels)` is applied to every training
    batch (e.g. torchvision's `v2.RandomChoice([v2.MixUp(...), v2.CutMix(...)])`), and a batch whose labels are
    soft (float, one row per image summing to 1) is scored by a soft-target cross-entropy with the Trainer's
    `label_smoothing_factor` applied once. Evaluation, head ranking and calibration batches are never transformed,
    so accuracy is measured against hard labels.

    Set `self.train_batch_transform` (None: no transform) in the subclass's `__init__`.
    """

    train_batch_transform: BatchTransform | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.train_batch_transform is not None and "labels" in inputs:
            inputs = dict(inputs)
            inputs["pixel_values"], inputs["labels"] = self.train_batch_transform(
                inputs["pixel_values"], inputs["labels"]
            )
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        if labels is None or not labels.is_floating_point():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        # The DeiT-with-teacher variant trains both heads, as its own loss does for hard labels.
        heads = (
            [outputs.cls_logits, outputs.distillation_logits]
            if getattr(outputs, "cls_logits", None) is not None
            else [outputs.logits]
        )
        smoothing = self.args.label_smoothing_factor
        loss = sum(soft_target_cross_entropy(logits, labels, smoothing) for logits in heads) / len(heads)
        return (loss, outputs) if return_outputs else loss
