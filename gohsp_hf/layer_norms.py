"""LayerNorms over the kept residual channels while a dense ViT/DeiT is still being pruned (`hidden_layer_norm`).

When pruning narrows the residual stream, the pruned model's LayerNorms can keep the dense model's statistics
(`"dense_statistics"`: the removed channels count as zeros, so the export is exact) or normalise over the kept
channels only, as an ordinary LayerNorm of the narrower width does. With `"plain"` that change happens at the
hard prune, which then changes the model's function; with `"masked"` every residual LayerNorm of the dense
model takes its statistics over the kept channels from the moment the pruning stage masks channels
(`MaskedLayerNorms`), so the model trains with the LayerNorms it will end with and the hard prune is exact.
"""

from __future__ import annotations

import torch
from torch import nn

from .groups import Layout

TRAINING_LAYER_NORMS = ("dense_statistics", "plain", "masked")
# The LayerNorms the exported model gets for each choice (`export.LAYER_NORMS`).
EXPORTED_LAYER_NORM = {"dense_statistics": "dense_statistics", "plain": "plain", "masked": "plain"}


def kept_channel_layer_norm(
    hidden_states: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """LayerNorm of `hidden_states` (..., hidden) with its mean and variance over the channels where `mask` is
    true; on the others the output is `bias` (zero once the channel is masked). On the kept channels it equals
    `F.layer_norm` of the kept channels alone, with their weight and bias."""
    mask = mask.to(hidden_states.dtype)
    count = mask.sum()
    mean = (hidden_states * mask).sum(-1, keepdim=True) / count
    centred = (hidden_states - mean) * mask
    variance = centred.pow(2).sum(-1, keepdim=True) / count
    return centred * torch.rsqrt(variance + eps) * weight + bias


def residual_layer_norms(model: nn.Module) -> list[nn.LayerNorm]:
    """Every LayerNorm of a ViT/DeiT that normalises the residual stream (two per block and the final one)."""
    names = Layout.from_model(model, hidden=True).names()
    modules = [model.get_submodule(name.removesuffix(".weight")) for name in names if name.endswith(".weight")]
    return [module for module in modules if isinstance(module, nn.LayerNorm)]


class MaskedLayerNorms:
    """Forward hooks that make the residual LayerNorms of a dense ViT/DeiT normalise over the kept channels only.

    Until `set_mask` gives a mask the LayerNorms are unchanged; `remove` takes the hooks off.

    Example:

    ```python
    >>> norms = MaskedLayerNorms(model)
    >>> norms.set_mask(structure.hidden_mask())   # the masked model now equals export(..., layer_norm="plain")
    >>> norms.remove()
    ```
    """

    def __init__(self, model: nn.Module):
        self.mask: torch.Tensor | None = None
        self.handles = [module.register_forward_hook(self._forward) for module in residual_layer_norms(model)]

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """The kept residual channels, (hidden_size,) booleans; None keeps the dense statistics."""
        self.mask = None if mask is None else mask.bool()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.mask = [], None

    def _forward(self, module: nn.LayerNorm, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self.mask is None:
            return None
        mask = self.mask.to(inputs[0].device)
        return kept_channel_layer_norm(inputs[0], mask, module.weight, module.bias, module.eps)
