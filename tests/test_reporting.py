"""Progress and reporting: ranking progress bar, stage banners, summary, TensorBoard scalars."""

import logging
import time
import types

import pytest
import torch
from conftest import make_model
from helpers import DigitsDataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gohsp_hf import GOHSPConfig, GOHSPTrainer


def test_progress_banners_summary_and_tensorboard(tmp_path, capsys):
    args = GOHSPConfig(str(tmp_path / "out"), use_cpu=True, report_to=["tensorboard"], soft_pruning="admm", admm_max_steps=8,
                       admm_update_steps=2, finetune_max_steps=4, logging_steps=2, per_device_train_batch_size=16,
                       ranking_samples=48, save_strategy="no", disable_tqdm=False)  # fmt: skip
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("gohsp_hf").addHandler(handler)
    try:
        GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 200)).train()
    finally:
        logging.getLogger("gohsp_hf").removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert "GOHSP stage 'admm': 8 steps, target sparsity 0.50" in messages
    assert any(m.startswith("GOHSP stage 'finetune'") for m in messages)
    assert any(m.startswith("GOHSP done.") and "parameters" in m for m in messages)  # the summary table
    assert "GOHSP head ranking: 100%" in capsys.readouterr().err  # the calibration progress bar
    events = sorted((tmp_path / "out").glob("**/events.out.tfevents.*"))
    scalars = {}
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    assert {"train/admm_residual", "train/admm_rho", "train/admm_sparsity", "train/loss"} <= set(scalars)
    assert len(scalars["train/admm_residual"]) >= 3


def test_speed_is_timed_where_the_model_is_compute_bound_and_read_against_flops():
    from conftest import uneven_structure

    from gohsp_hf import export_pruned_model
    from gohsp_hf.counting import compare_speed

    dense = make_model("vit")
    speed = compare_speed(dense, export_pruned_model(dense, uneven_structure(dense)), repeats=3, min_ms=2.0)
    assert speed["batch_size"] in (8, 16, 32, 64, 128, 256, 512) and speed["flops_ratio"] > 1.5
    assert speed["speedup"] == pytest.approx(speed["dense_ms"] / speed["pruned_ms"])


class _SleepsPerImage(torch.nn.Module):
    """A model whose forward takes 1 ms per image: the batch search is checked on times it controls (a real
    model's median can land a few percent under `min_ms` on a busy machine, as it did once in CI)."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(image_size=4, num_channels=1)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        time.sleep(1e-3 * pixel_values.shape[0])
        return pixel_values


def test_counting_and_timing_leave_the_global_generator_alone():
    """How many batches the speed search draws depends on the machine's load; were they drawn from torch's global
    generator, what training draws next (LoRA adapters' initial weights) would too, and a seeded run would differ
    from run to run (it did: `test_resume_a_lora_finetune` failed on a busy machine)."""
    from gohsp_hf.counting import _compute_bound_batch, count_flops, example_pixels

    model, vit = _SleepsPerImage(), make_model("vit")
    state = torch.random.get_rng_state()
    assert _compute_bound_batch(model, min_ms=24.0) == 32
    assert count_flops(vit) > 0
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(example_pixels(model, 2), example_pixels(model, 2))  # the same batch every time


def test_the_timed_batch_is_the_smallest_where_the_dense_forward_takes_min_ms():
    from gohsp_hf.counting import _compute_bound_batch

    model = _SleepsPerImage()
    assert _compute_bound_batch(model, min_ms=24.0) == 32  # 8 and 16 images take 8 and 16 ms
    assert _compute_bound_batch(model, min_ms=5.0) == 8
    assert _compute_bound_batch(model, min_ms=1e4, largest=64) == 64  # never reached: the largest batch


def test_the_speed_line_says_why_a_small_model_is_not_faster():
    from gohsp_hf.model_card import speed_note

    fast = speed_note({"speedup": 1.8, "flops_ratio": 2.0, "pruned_ms": 5.0, "device": "cpu"})
    assert fast == "5.00 (1.80x faster; 2.00x fewer FLOPs)"
    slow = speed_note({"speedup": 0.98, "flops_ratio": 2.0, "pruned_ms": 5.0, "device": "cpu"})
    assert "not faster: 2.00x fewer FLOPs, but a model this small" in slow and "0.98" not in slow
