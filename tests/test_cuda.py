"""The pipeline on a GPU. These run only where CUDA is available (CI has none): the hard prune once failed there,
with the indices of the kept groups on the CPU and the weights on the GPU."""

import pytest
import torch
from conftest import make_model, uneven_structure
from helpers import DigitsDataset, accuracy
from transformers import AutoModelForImageClassification

from gohsp_hf import GOHSPConfig, GOHSPTrainer, export_pruned_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_export_from_the_gpu_equals_the_export_from_the_cpu():
    model = make_model("vit")
    structure = uneven_structure(model, hidden=True)
    on_cpu = export_pruned_model(model, structure).state_dict()
    on_gpu = export_pruned_model(model.cuda(), structure).state_dict()
    assert on_cpu.keys() == on_gpu.keys()
    for name, value in on_cpu.items():
        torch.testing.assert_close(on_gpu[name].cpu(), value, rtol=0, atol=0)


def test_gohsp_run_on_the_gpu_prunes_exports_and_reloads(tmp_path):
    """The default pipeline (Fisher scores, gradual masks, residual width) trains, hard-prunes, fine-tunes and
    saves on the GPU; the saved model reloads on the CPU with the same logits."""
    train, test = DigitsDataset(0, 1400), DigitsDataset(1400, None)
    args = GOHSPConfig(
        str(tmp_path / "out"), target_sparsity=0.6, prune_hidden_size=True, round_to=1, admm_max_steps=20,
        finetune_max_steps=10, learning_rate=3e-3, per_device_train_batch_size=32, ranking_samples=64,
        use_cpu=False, report_to=[], disable_tqdm=True, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = GOHSPTrainer(
        model=make_model("vit", num_labels=10), args=args, train_dataset=train, eval_dataset=test,
        compute_metrics=accuracy,
    )  # fmt: skip
    trainer.train()
    results = trainer.results
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert abs(results["achieved_sparsity"] - 0.6) < 0.005
    assert results["before_hard_prune"]["loss"] == pytest.approx(results["after_hard_prune"]["loss"], rel=1e-4)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    x = test.pixel_values[:8]
    with torch.no_grad():
        expected = trainer.model.eval()(x.cuda()).logits.cpu()
        torch.testing.assert_close(reloaded(x).logits, expected, atol=2e-3, rtol=2e-3)
