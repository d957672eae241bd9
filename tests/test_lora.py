"""PEFT: LoRA recovery fine-tuning of the pruned model, merged before saving; LoRA models as input."""

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch
from conftest import make_model, uneven_structure
from helpers import DigitsDataset
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification

from gohsp_hf import GOHSPConfig, GOHSPTrainer, GOHSPViTForImageClassification, export_pruned_model
from gohsp_hf.lora import add_lora, merge_lora

REPO = Path(__file__).resolve().parents[1]


def randomise_lora(model):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)


def test_merge_keeps_the_logits(pixel_values):
    for variant, hidden in (("vit", False), ("deit_with_teacher", False), ("deit", True)):
        dense = make_model(variant)
        pruned = export_pruned_model(dense, uneven_structure(dense, hidden=hidden)).eval()
        lora = add_lora(pruned, r=4)
        randomise_lora(lora)
        shapes = {n: tuple(p.shape) for n, p in lora.named_parameters() if "lora_" in n and "layers.0.mlp.fc1" in n}
        assert sorted(shapes.values()) == [(4, 29 if hidden else 48), (37, 4)]  # LoRA sits at the pruned shapes
        with torch.no_grad():
            expected = lora(pixel_values).logits
            merged = merge_lora(lora)
            got = merged(pixel_values).logits
        assert type(merged) is GOHSPViTForImageClassification
        assert not any("lora" in name for name in merged.state_dict())
        assert (expected - pruned_logits(dense, pixel_values, hidden)).abs().max() > 1e-3  # the adapters did something
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def pruned_logits(dense, x, hidden=False):
    with torch.no_grad():
        return export_pruned_model(dense, uneven_structure(dense, hidden=hidden)).eval()(x).logits


def test_finetune_with_lora_saves_a_plain_model(tmp_path):
    args = GOHSPConfig(str(tmp_path / "out"), soft_pruning="admm", admm_max_steps=6, admm_update_steps=3, finetune_max_steps=8,
                       finetune_with_lora=True, lora_target_modules="q_proj,fc1", per_device_train_batch_size=16,
                       learning_rate=5e-3, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True)  # fmt: skip
    trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 200))
    trainer.train()
    final = load_file(tmp_path / "out" / "model.safetensors")
    base = load_file(tmp_path / "out" / "finetune" / "pruned_base" / "model.safetensors")
    assert set(final) == set(base) and not any("lora" in key for key in final)
    layer = "vit.layers.1"
    assert not torch.equal(final[f"{layer}.attention.q_proj.weight"], base[f"{layer}.attention.q_proj.weight"])
    assert not torch.equal(final[f"{layer}.mlp.fc1.weight"], base[f"{layer}.mlp.fc1.weight"])
    # Modules without adapters were frozen: bit-identical to the hard-pruned model.
    assert torch.equal(final[f"{layer}.attention.k_proj.weight"], base[f"{layer}.attention.k_proj.weight"])
    assert torch.equal(final[f"{layer}.mlp.fc2.weight"], base[f"{layer}.mlp.fc2.weight"])
    assert not torch.equal(final["classifier.weight"], base["classifier.weight"])  # the head is trained fully
    assert isinstance(
        AutoModelForImageClassification.from_pretrained(tmp_path / "out"), GOHSPViTForImageClassification
    )


def test_a_lora_model_is_merged_before_pruning(tmp_path, pixel_values):
    peft_model = add_lora(make_model("vit", num_labels=10), r=4)
    randomise_lora(peft_model)
    with torch.no_grad():
        expected = copy.deepcopy(peft_model).eval()(pixel_values).logits
    args = GOHSPConfig(str(tmp_path / "out"), use_cpu=True, report_to=[])
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("gohsp_hf").addHandler(handler)
    try:
        trainer = GOHSPTrainer(model=peft_model, args=args, train_dataset=DigitsDataset(0, 32))
    finally:
        logging.getLogger("gohsp_hf").removeHandler(handler)
    assert any("Merging the LoRA adapters into the weights" in r.getMessage() for r in records)
    assert not isinstance(trainer.model, PeftModel)
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.eval()(pixel_values).logits, expected, atol=1e-5, rtol=1e-5)


def test_resume_a_lora_finetune(tmp_path):
    def run(out, *extra):
        out.mkdir()
        command = [sys.executable, str(REPO / "tests" / "scripts" / "gohsp_run.py"), str(out), "--lora", *extra]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((out / "rank0.json").read_text())

    full = run(tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    assert run(interrupted, "--interrupt", "finetune:9")["status"] == "interrupted"
    command = [
        sys.executable,
        str(REPO / "tests" / "scripts" / "gohsp_run.py"),
        str(interrupted),
        "--lora",
        "--resume",
    ]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    resumed = json.loads((interrupted / "rank0.json").read_text())
    assert resumed["status"] == "finished" and resumed["weights_sha256"] == full["weights_sha256"]
