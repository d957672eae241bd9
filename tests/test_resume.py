"""Resume exactly, survive kills, stop on NaN, lose nothing (issue: reliability)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_model
from helpers import ACCELERATE_LAUNCH, DigitsDataset
from transformers import AutoModelForImageClassification, ViTForImageClassification

from gohsp_hf import GOHSPConfig, GOHSPTrainer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "gohsp_run.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
QUIET = dict(use_cpu=True, report_to=[], disable_tqdm=True, seed=0)


def run_script(out: Path, *extra, launcher=(sys.executable,), check=True):
    result = subprocess.run([*launcher, str(SCRIPT), str(out), *extra], capture_output=True, text=True, env=ENV,
                            timeout=300, cwd=out.parent)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def ranks(out: Path, world: int = 1) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    run_script(out)
    return ranks(out)[0]


@pytest.mark.parametrize("interrupt", ["admm:14", "finetune:9"])
def test_resume_ends_like_the_uninterrupted_run(interrupt, uninterrupted, tmp_path):
    run_script(tmp_path, "--interrupt", interrupt)
    assert ranks(tmp_path)[0]["status"] == "interrupted"
    assert not (tmp_path / "run" / "model.safetensors").exists()  # no final model from a crashed run
    run_script(tmp_path, "--resume")
    resumed = ranks(tmp_path)[0]
    assert resumed["status"] == "finished"
    assert resumed["structure"] == uninterrupted["structure"]
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]  # bit-exact
    assert resumed["residuals"] == uninterrupted["residuals"]
    results = json.loads((tmp_path / "run" / "gohsp_results.json").read_text())
    assert abs(results["achieved_sparsity"] - 0.4) < 0.005


@pytest.mark.parametrize("method", [("--method", "sgmp", "--interrupt", "sgmp:20"),
                                    ("--soft_pruning", "gradual", "--hidden", "--layer_norm", "rescaled",
                                     "--interrupt", "admm:20"),
                                    ("--soft_pruning", "gradual", "--lr_per_stage", "--interrupt", "finetune:9")])  # fmt: skip
def test_resume_gradual_masks(method, tmp_path):
    """SGMP and gohsp's `soft_pruning="gradual"` hold masks in their checkpoints (with the residual width, the
    LayerNorms over the kept channels take them up again); fine-tuning resumed on a schedule of its own (gohsp's
    default is one schedule over both stages, resumed in the other tests) restarts it right."""
    settings = method[:-2]
    full = tmp_path / "full"
    full.mkdir()
    run_script(full, *settings)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    run_script(interrupted, *method)
    run_script(interrupted, *settings, "--resume")
    assert ranks(interrupted)[0]["structure"] == ranks(full)[0]["structure"]
    assert ranks(interrupted)[0]["weights_sha256"] == ranks(full)[0]["weights_sha256"]


ACCELERATE_2PROC = (
    *ACCELERATE_LAUNCH,
    "--config_file",
    str(REPO / "examples" / "accelerate_configs" / "cpu_2proc.yaml"),
)


@pytest.fixture(scope="module")
def uninterrupted_two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("full2")
    run_script(out, "--hidden", launcher=ACCELERATE_2PROC)  # the residual width pruned too
    return ranks(out, 2)


@pytest.mark.parametrize("interrupt", ["admm:14", "finetune:9"])
def test_resume_under_two_processes(interrupt, uninterrupted_two_processes, tmp_path):
    run_script(tmp_path, "--hidden", "--interrupt", interrupt, launcher=ACCELERATE_2PROC)
    run_script(tmp_path, "--hidden", "--resume", launcher=ACCELERATE_2PROC)
    both = uninterrupted_two_processes + ranks(tmp_path, 2)
    assert all(r["world_size"] == 2 and r["status"] == "finished" for r in both)
    assert len({r["weights_sha256"] for r in both}) == 1
    assert all(r["structure"] == both[0]["structure"] for r in both) and "hidden" in both[0]["structure"]


def test_sigkill_in_the_admm_stage_then_resume(tmp_path):
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "--admm_steps", "100", "--save_steps", "10"],
                               env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    states = tmp_path / "run" / "admm"
    deadline = time.time() + 120
    while len(list(states.glob("checkpoint-*/gohsp_state.pt"))) < 2 and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "run" / "config.json").exists()  # the final model folder is absent, not half-written
    run_script(tmp_path, "--admm_steps", "100", "--save_steps", "10", "--resume")
    assert ranks(tmp_path)[0]["status"] == "finished"
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "run")
    assert model.config.gohsp_provenance["method"] == "gohsp"


def test_checkpoint_weights_load_through_the_key_mapping(tmp_path):
    """transformers 5.24's own resume leaves native ViT weights at their init (strict=False); ours not."""
    args = GOHSPConfig(str(tmp_path / "out"), soft_pruning="admm", admm_max_steps=4, admm_update_steps=2, finetune_max_steps=2,
                       save_strategy="steps", save_steps=4, per_device_train_batch_size=16, **QUIET)  # fmt: skip
    trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 200))
    trainer.train()
    checkpoint = tmp_path / "out" / "admm" / "checkpoint-4"
    on_disk = ViTForImageClassification.from_pretrained(checkpoint).state_dict()
    fresh = make_model("vit", num_labels=10, seed=7)
    trainer._load_from_checkpoint(str(checkpoint), model=fresh)
    for name, tensor in fresh.state_dict().items():
        torch.testing.assert_close(tensor, on_disk[name], atol=0, rtol=0, msg=name)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    args = GOHSPConfig(str(tmp_path / "out"), **QUIET)
    trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 64))
    with pytest.raises(ValueError, match="No complete GOHSP checkpoint in"):
        trainer.train(resume_from_checkpoint=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is not a complete GOHSP checkpoint"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "plain"))


@pytest.mark.parametrize(
    "overrides, cause",
    [
        (dict(rho=1e38, rho_max=1e38), "the ADMM penalty overflowed \\(rho = 1e\\+38\\)"),
        (dict(learning_rate=1e30, max_grad_norm=0.0, finetune_max_steps=0), "the task loss diverged"),
    ],
)
def test_nan_or_inf_stops_the_run_and_keeps_the_last_checkpoint(overrides, cause, tmp_path):
    settings = dict(soft_pruning="admm", admm_max_steps=12, admm_update_steps=3, finetune_max_steps=4, save_strategy="steps", save_steps=1,
                    per_device_train_batch_size=16, learning_rate=1e-3, **QUIET)  # fmt: skip
    args = GOHSPConfig(str(tmp_path / "out"), **{**settings, **overrides})
    trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 200))
    with pytest.raises(FloatingPointError, match=f"GOHSP stopped at step [0-9]+ of stage 'admm': .*{cause}") as error:
        trainer.train()
    if "kept" in str(error.value):
        kept = str(error.value).split("the last good checkpoint, ")[1].split(", is kept")[0]
        assert (Path(kept) / "gohsp_state.pt").exists()
    assert not (tmp_path / "out" / "model.safetensors").exists()
