"""LayerNorms over the kept residual channels while a dense ViT/DeiT is still being pruned (`hidden_layer_norm`).

When pruning narrows the residual stream, the pruned model's LayerNorms can keep the dense model's statistics
(`"dense_statistics"`: the removed channels count as zeros, so the export is exact) or normalise over the kept
channels only, as an ordinary LayerNorm of the narrower width does. With `"plain"` that change happens at the
hard prune, which then changes the model's function; with `"masked"` every residual LayerNorm of the dense
model takes its statistics over the kept channels from the moment the pruning stage masks channels
(`MaskedLayerNorms`), so the model trains with the LayerNorms it will end with and the hard prune is exact;
`"rescaled"` does the same and scales the LayerNorm weights at every cut so that their outputs keep their size;
`"gradual"` moves the statistics from the dense ones to those of the kept channels step by step over the
stage (the removed channels' weight in them falls linearly to 0 at its last step), so that no update changes
them at once, and the hard prune is exact too. `gohsp` defaults to `"masked"` when its pruning stage and
fine-tuning last at least 6 epochs together and to `"dense_statistics"` below (`GOHSPConfig.hidden_layer_norm`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .groups import Layout

# The choices that change the dense model's LayerNorms during the pruning stage (`MaskedLayerNorms`).
STAGE_LAYER_NORMS = ("masked", "rescaled", "gradual")
TRAINING_LAYER_NORMS = ("dense_statistics", "plain", *STAGE_LAYER_NORMS)
# The LayerNorms the exported model gets for each choice (`export.LAYER_NORMS`).
EXPORTED_LAYER_NORM = {"dense_statistics": "dense_statistics"} | {name: "plain" for name in TRAINING_LAYER_NORMS[1:]}


def kept_channel_layer_norm(
    hidden_states: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    removed_weight: float = 0.0,
) -> torch.Tensor:
    """LayerNorm of `hidden_states` (..., hidden) with its mean and variance over the channels where `mask` is
    true; on the others the output is `bias` (zero once the channel is masked). On the kept channels it equals
    `F.layer_norm` of the kept channels alone, with their weight and bias.

    With `removed_weight` w in (0, 1] the removed channels still count in the statistics as zeros of weight w:
    at w = 1 these are the dense LayerNorm's statistics of the masked model (its removed channels are zero)."""
    mask = mask.to(hidden_states.dtype)
    kept = mask.sum()
    removed = removed_weight * (mask.numel() - kept)
    count = kept + removed
    mean = (hidden_states * mask).sum(-1, keepdim=True) / count
    centred = (hidden_states - mean) * mask
    variance = (centred.pow(2).sum(-1, keepdim=True) + removed * mean.pow(2)) / count
    return centred * torch.rsqrt(variance + eps) * weight + bias


def residual_layer_norms(model: nn.Module) -> list[nn.LayerNorm]:
    """Every LayerNorm of a ViT/DeiT that normalises the residual stream (two per block and the final one)."""
    names = Layout.from_model(model, hidden=True).names()
    modules = [model.get_submodule(name.removesuffix(".weight")) for name in names if name.endswith(".weight")]
    return [module for module in modules if isinstance(module, nn.LayerNorm)]


class MaskedLayerNorms:
    """Forward hooks that make the residual LayerNorms of a dense ViT/DeiT normalise over the kept channels only.

    Until `set_mask` gives a mask the LayerNorms are unchanged; `remove` takes the hooks off. With `ramp_steps`,
    `at_step(step)` sets how much the removed channels still count in the statistics (`removed_weight`, see
    `kept_channel_layer_norm`): 1 - step / ramp_steps, 0 from `ramp_steps` on; without, they never count.

    Example:

    ```python
    >>> norms = MaskedLayerNorms(model)
    >>> norms.set_mask(structure.hidden_mask())   # the masked model now equals export(..., layer_norm="plain")
    >>> norms.remove()
    ```
    """

    def __init__(self, model: nn.Module, ramp_steps: int | None = None, rescale: bool = False):
        self.mask: torch.Tensor | None = None
        self.ramp_steps, self.removed_weight, self.rescale = ramp_steps, 0.0, rescale
        self.modules = residual_layer_norms(model)
        self.handles = [module.register_forward_hook(self._forward) for module in self.modules]

    def set_mask(self, mask: torch.Tensor | None, rescale_weights: bool = True) -> None:
        """The kept residual channels, (hidden_size,) booleans; None keeps the dense statistics.

        With `rescale` (and `rescale_weights`, off when the weights come from a checkpoint that has it already),
        every LayerNorm's weight is multiplied by sqrt(channels before / channels kept): over zero-mean tokens the
        normalised values then keep the size they had (the variance over k of D channels is D / k times the
        dense one), so a cut changes the function less."""
        mask = None if mask is None else mask.bool()
        if self.rescale and rescale_weights and mask is not None:
            before = mask.numel() if self.mask is None else int(self.mask.sum())
            with torch.no_grad():
                for module in self.modules:
                    module.weight.mul_(math.sqrt(before / int(mask.sum())))
        self.mask = None if mask is None else mask.to(self.modules[0].weight.device)  # once, not at every forward

    def at_step(self, step: int) -> None:
        """Set the removed channels' weight for training step `step` (counted from 1) of the ramp."""
        if self.ramp_steps:
            self.removed_weight = max(0.0, 1.0 - step / self.ramp_steps)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.mask = [], None

    def _forward(self, module: nn.LayerNorm, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self.mask is None:
            return None
        return kept_channel_layer_norm(
            inputs[0], self.mask, module.weight, module.bias, module.eps, self.removed_weight
        )
