"""The optimizer's state across the hard prune: the moments of the kept weights, sliced as the export slices them.

Without it fine-tuning starts with a fresh optimizer: Adam's first steps then move every weight by about the
full learning rate (its second moment is estimated from one batch), at whatever rate the schedule has reached.
With it, fine-tuning continues from the state the pruning stage ended in, as if the pruned groups had never been
there (a one-shot prune has no such state to keep).
"""

from __future__ import annotations

import torch
from torch import nn

from .export import exported_name, slice_like_export
from .structure import PrunedStructure


def sliced_optimizer_state(
    optimizer: torch.optim.Optimizer, model: nn.Module, structure: PrunedStructure
) -> dict[str, dict]:
    """The optimizer's per-parameter state, sliced as `export_pruned_model(model, structure)` slices the weights.

    Args:
        optimizer: the optimizer of `model` (a torch optimizer; unwrap accelerate's first).
        model: the dense (masked) ViT/DeiT that `structure` describes.
        structure: what the export keeps.

    Returns:
        `{parameter name in the exported model: state}`. Tensors shaped like the parameter are sliced, scalars
        (Adam's `step`) copied; a parameter whose state holds any other tensor (a factored second moment) is
        left out, and starts fresh.
    """
    params = dict(model.named_parameters())
    state = {name: optimizer.state[p] for name, p in params.items() if optimizer.state.get(p)}
    state = {  # states the export can slice: tensors shaped like the parameter, and scalars
        name: entry
        for name, entry in state.items()
        if all(v.dim() == 0 or v.shape == params[name].shape for v in entry.values() if torch.is_tensor(v))
    }
    moments = {
        key for entry in state.values() for key, value in entry.items() if torch.is_tensor(value) and value.dim()
    }
    sliced = {
        key: slice_like_export(model, structure, {n: e[key] for n, e in state.items() if key in e}) for key in moments
    }
    return {
        exported_name(model, name): {
            key: sliced[key][exported_name(model, name)] if key in moments else _copy(value)
            for key, value in entry.items()
        }
        for name, entry in state.items()
    }


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict[str, dict]) -> int:
    """Give `model`'s parameters the state `sliced_optimizer_state` kept for them (by name; shapes must match).

    Returns:
        How many parameters got a state.
    """
    loaded = 0
    for name, p in model.named_parameters():
        entry = state.get(name)
        if entry is None:
            continue
        wrong = [v.shape for v in entry.values() if torch.is_tensor(v) and v.dim() and v.shape != p.shape]
        if wrong:
            raise ValueError(
                f"The carried optimizer state of {name} has shape {tuple(wrong[0])} and the parameter "
                f"{tuple(p.shape)}: the state was sliced for another structure."
            )
        optimizer.state[p] = {
            k: v.to(p.device) if torch.is_tensor(v) and v.dim() else _copy(v) for k, v in entry.items()
        }
        loaded += 1
    return loaded


def _copy(value):
    return value.clone() if torch.is_tensor(value) else value
