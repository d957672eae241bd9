"""Side-by-side CPU inference timing of several models (medians of interleaved runs)."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date

import torch


@torch.inference_mode()
def time_models(models: dict, batch_sizes=(1, 32), repeats: int = 7, warmup: int = 2) -> dict:
    """Median forward time (seconds) per model and batch size (models called as `model(pixel_values=x)`)."""
    config = next(iter(models.values())).config
    functions = {name: (lambda x, m=model: m(pixel_values=x)) for name, model in models.items()}
    return time_functions(functions, config, batch_sizes, repeats, warmup)


@torch.inference_mode()
def time_functions(functions: dict, config, batch_sizes=(1, 32), repeats: int = 7, warmup: int = 2) -> dict:
    """Median time (seconds) of `function(pixel_values)` per function and batch size, on the same random images.

    The functions run in turn inside each repeat, so they see the same machine load; each is warmed up first.
    """
    results = {name: {} for name in functions}
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, config.num_channels, config.image_size, config.image_size)
        for function in functions.values():
            for _ in range(warmup):
                function(x)
        samples = {name: [] for name in functions}
        for _ in range(repeats):
            for name, function in functions.items():
                start = time.perf_counter()
                function(x)
                samples[name].append(time.perf_counter() - start)
        for name in functions:
            results[name][batch_size] = {
                "median_s": statistics.median(samples[name]),
                "images_per_s": batch_size / statistics.median(samples[name]),
                "runs_s": samples[name],
            }
    return results


def machine() -> dict:
    return {
        "date": date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
