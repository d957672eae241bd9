"""Parameter and FLOP counts of dense and pruned models, measured by torch rather than by hand."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def example_pixels(model: nn.Module, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random `pixel_values` of the model's image size, channels, dtype and device.

    Without a `generator` they come from one seeded here, never from torch's global generator: counting or timing a
    model (`compare_speed` tries batch sizes until one is slow enough, so how many batches it draws depends on the
    machine's load) must not change what training draws next, such as the initial weights of LoRA adapters.
    """
    config, parameter = model.config, next(model.parameters())
    size = config.image_size if isinstance(config.image_size, (list, tuple)) else (config.image_size,) * 2
    generator = generator or torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, config.num_channels, *size, generator=generator)
    return x.to(dtype=parameter.dtype, device=parameter.device)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.no_grad()
def count_flops(model: nn.Module, batch_size: int = 1) -> int:
    """FLOPs of one forward pass on `batch_size` images of the model's size (`torch.utils.flop_counter`).

    Counts matrix multiplications, convolutions and attention; one multiply-add is 2 FLOPs, so MACs are
    `count_flops(model) // 2`. The pass runs with eager attention, because the flop counter sees no FLOPs in
    the CPU SDPA kernel (measured: QK^T and AV went uncounted); the model's setting is restored afterwards.
    """
    pixel_values = example_pixels(model, batch_size)
    was_training, implementation = model.training, model.config._attn_implementation
    model.eval()
    model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as counter:
            model(pixel_values=pixel_values)
    finally:
        model.set_attn_implementation(implementation)
        model.train(was_training)
    return int(counter.get_total_flops())


def model_cost(model: nn.Module) -> dict[str, int]:
    """`{"params": ..., "flops": ..., "macs": ...}` for one image."""
    flops = count_flops(model)
    return {"params": count_parameters(model), "flops": flops, "macs": flops // 2}


@torch.inference_mode()
def compare_speed(
    dense: nn.Module, pruned: nn.Module, batch_size: int | None = None, repeats: int = 15, min_ms: float = 30.0
) -> dict[str, float]:
    """Median forward time of both models on the same random batch, run in turn (milliseconds), the speedup, and
    the FLOPs ratio it should be read against.

    Args:
        batch_size: the batch to time; by default the smallest power of two from 8 (at most 512) at which the dense
            forward takes `min_ms`: with smaller batches a small model's time is per-operator overhead, and halving
            its FLOPs changes nothing, which says nothing about the pruning.
        repeats: timed runs of each model, interleaved so that both see the same machine load.
    """
    models = {"dense": dense, "pruned": pruned}
    modes = {name: model.training for name, model in models.items()}
    try:
        for model in models.values():
            model.eval()
        batch_size = batch_size or _compute_bound_batch(dense, min_ms)
        x = example_pixels(pruned, batch_size)
        times = _interleaved_times(models, x, repeats)
    finally:
        for name, model in models.items():
            model.train(modes[name])
    dense_ms, pruned_ms = (1e3 * statistics.median(times[name]) for name in ("dense", "pruned"))
    return {
        "batch_size": batch_size,
        "dense_ms": dense_ms,
        "pruned_ms": pruned_ms,
        "speedup": dense_ms / pruned_ms,
        "flops_ratio": count_flops(dense) / count_flops(pruned),
        "repeats": repeats,
        "device": str(x.device),
    }


def _compute_bound_batch(model: nn.Module, min_ms: float, largest: int = 512) -> int:
    batch_size = 8
    while batch_size < largest:
        x = example_pixels(model, batch_size)
        model(pixel_values=x)  # warm-up
        if 1e3 * min(_interleaved_times({"m": model}, x, 3)["m"]) >= min_ms:
            break
        batch_size *= 2
    return batch_size


def _interleaved_times(models: dict, x: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    times = {name: [] for name in models}
    for model in models.values():
        for _ in range(2):  # warm-up
            model(pixel_values=x)
    for _ in range(repeats):
        for name, model in models.items():
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(pixel_values=x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times
