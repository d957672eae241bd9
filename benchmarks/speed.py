"""Side-by-side CPU inference timing of several models (medians of interleaved runs)."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date

import torch


@torch.inference_mode()
def time_models(models: dict, batch_sizes=(1, 32), repeats: int = 7, warmup: int = 2) -> dict:
    """Median forward time (seconds) per model and batch size.

    The models run in turn inside each repeat, so they see the same machine load; each is warmed up first.
    """
    results = {name: {} for name in models}
    for batch_size in batch_sizes:
        any_model = next(iter(models.values()))
        size = any_model.config.image_size
        x = torch.randn(batch_size, any_model.config.num_channels, size, size)
        for model in models.values():
            for _ in range(warmup):
                model(pixel_values=x)
        samples = {name: [] for name in models}
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(pixel_values=x)
                samples[name].append(time.perf_counter() - start)
        for name in models:
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
