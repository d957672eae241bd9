"""How often to update Z and U (`admm_update_steps`): the ADMM residual and the accuracy after the hard prune.

A tiny ViT trained on scikit-learn's digits is pruned to 50% by GOHSP with Z/U updates every 10 and every 100
steps (300 ADMM steps, Adam at 3e-3), and by one-shot magnitude pruning (SOMP) for reference. Also times the
ADMM penalty (forward + backward) per step.

    python benchmarks/admm_interval.py        # writes benchmarks/results/admm_interval.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from speed import machine
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import DigitsDataset, accuracy  # noqa: E402

from gohsp_hf import ADMMState, BudgetSolver, GOHSPConfig, GOHSPTrainer  # noqa: E402

QUIET = dict(use_cpu=True, report_to=[], disable_tqdm=True, save_strategy="no", seed=0)
TRAIN, EVAL = DigitsDataset(0, 1400), DigitsDataset(1400, None)


def dense_model(folder: Path) -> Path:
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=3,
                                                num_attention_heads=3, intermediate_size=96, num_labels=10))  # fmt: skip
    args = TrainingArguments(str(folder / "train"), num_train_epochs=25, learning_rate=2e-3, warmup_steps=20,
                             per_device_train_batch_size=32, **QUIET)  # fmt: skip
    Trainer(model=model, args=args, train_dataset=TRAIN).train()
    model.save_pretrained(folder / "dense")
    return folder / "dense"


def prune(dense: Path, folder: Path, method: str, update_steps: int) -> dict:
    args = GOHSPConfig(str(folder), method=method, target_sparsity=0.5, admm_max_steps=300,
                       admm_update_steps=update_steps, finetune_max_steps=0, finetune_epochs=0, learning_rate=3e-3,
                       per_device_train_batch_size=32, ranking_samples=64, logging_steps=10, **QUIET)  # fmt: skip
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense), args=args, train_dataset=TRAIN,
                           eval_dataset=EVAL, compute_metrics=accuracy)  # fmt: skip
    trainer.train()
    logs = trainer.results.get("log_history", {}).get("admm", [])
    return {
        "residuals": [log["admm_residual"] for log in logs if "admm_residual" in log],
        "dense_accuracy": trainer.results["dense"]["accuracy"],
        "accuracy_after_hard_prune": trainer.results["after_hard_prune"]["accuracy"],
    }


def penalty_ms(dense: Path, repeats: int = 200) -> float:
    model = ViTForImageClassification.from_pretrained(dense)
    state = ADMMState(model, torch.ones(3, 3, dtype=torch.bool), BudgetSolver.from_model(model, 0.5))
    start = time.perf_counter()
    for _ in range(repeats):
        state.penalty(model).backward()
    return 1e3 * (time.perf_counter() - start) / repeats


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        dense = dense_model(Path(tmp))
        results = {
            "command": "python benchmarks/admm_interval.py",
            "machine": machine(),
            "gohsp_every_10_steps": prune(dense, Path(tmp) / "g10", "gohsp", 10),
            "gohsp_every_100_steps": prune(dense, Path(tmp) / "g100", "gohsp", 100),
            "somp": prune(dense, Path(tmp) / "somp", "somp", 100),
            "penalty_forward_backward_ms": penalty_ms(dense),
        }
    (Path(__file__).parent / "results" / "admm_interval.json").write_text(json.dumps(results, indent=1))
    for name in ("gohsp_every_10_steps", "gohsp_every_100_steps", "somp"):
        r = results[name]
        print(f"{name}: residuals {[round(x, 3) for x in r['residuals']]}, accuracy after hard prune "
              f"{r['accuracy_after_hard_prune']:.3f} (dense {r['dense_accuracy']:.3f})")  # fmt: skip
    print(f"penalty forward + backward: {results['penalty_forward_backward_ms']:.2f} ms")


if __name__ == "__main__":
    main()
