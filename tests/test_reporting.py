"""Progress and reporting: ranking progress bar, stage banners, summary, TensorBoard scalars."""

import logging

from conftest import make_model
from helpers import DigitsDataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gohsp_hf import GOHSPConfig, GOHSPTrainer


def test_progress_banners_summary_and_tensorboard(tmp_path, capsys):
    args = GOHSPConfig(str(tmp_path / "out"), use_cpu=True, report_to=["tensorboard"], admm_max_steps=8,
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
