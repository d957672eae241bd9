"""Real GOHSPTrainer runs on a tiny ViT trained on scikit-learn's digits."""

import copy
import json
import shutil

import pytest
import torch
from conftest import make_model
from helpers import DigitsDataset, accuracy, run_python
from huggingface_hub import ModelCard
from transformers import (
    AutoModelForImageClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTForImageClassification,
)
from transformers.modeling_outputs import ImageClassifierOutput

from gohsp_hf import GOHSPConfig, GOHSPTrainer, GOHSPViTForImageClassification
from gohsp_hf.hub import checkpoint_patterns, hub_files
from gohsp_hf.layer_norms import residual_layer_norms
from gohsp_hf.model_card import model_card

TRAIN, EVAL = DigitsDataset(0, 1400), DigitsDataset(1400, None)
QUIET = dict(use_cpu=True, report_to=[], disable_tqdm=True, save_strategy="no", seed=0)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    """A tiny ViT trained on digits for a few seconds (pruning a random model says nothing)."""
    path = tmp_path_factory.mktemp("dense")
    model = make_model("vit", num_labels=10)
    args = TrainingArguments(
        str(path / "train"),
        num_train_epochs=8,
        learning_rate=2e-3,
        warmup_steps=20,
        per_device_train_batch_size=32,
        **QUIET,
    )
    Trainer(model=model, args=args, train_dataset=TRAIN).train()
    model.save_pretrained(path / "model")
    return path / "model"


def gohsp_args(output_dir, **overrides):
    settings = dict(
        target_sparsity=0.5,
        soft_pruning="admm",  # these tests are about the ADMM stage; the default (gradual masks) has its own
        round_to=1,  # chunks of 8 are too coarse for the budget on this 48-wide model
        admm_max_steps=300,
        admm_update_steps=100,
        finetune_max_steps=60,
        learning_rate=3e-3,
        per_device_train_batch_size=32,
        ranking_samples=64,
        logging_steps=20,
    )
    return GOHSPConfig(str(output_dir), **{**settings, **QUIET, **overrides})


@pytest.fixture(scope="module")
def gohsp_run(dense_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("gohsp") / "out"
    dense = ViTForImageClassification.from_pretrained(dense_dir)
    before = {n: p.detach().clone() for n, p in dense.named_parameters()}
    trainer = GOHSPTrainer(
        model=dense, args=gohsp_args(output_dir), train_dataset=TRAIN, eval_dataset=EVAL, compute_metrics=accuracy
    )
    trainer.train()
    return trainer, dense, before, output_dir


def test_gohsp_run_trains_and_hits_the_budget(gohsp_run):
    trainer, dense, before, _ = gohsp_run
    results = trainer.results
    losses = [log["loss"] for stage in results["log_history"].values() for log in stage if "loss" in log]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    changed = [n for n, p in dense.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "vit.layers.0.attention.q_proj.weight" in changed and "classifier.weight" in changed
    assert abs(results["achieved_sparsity"] - 0.5) < 0.005
    assert isinstance(trainer.model, GOHSPViTForImageClassification)
    # The pruned model keeps most of the dense accuracy on this easy task.
    assert results["pruned"]["accuracy"] > results["dense"]["accuracy"] - 0.1


def test_admm_residual_falls_and_is_logged(gohsp_run):
    trainer, *_ = gohsp_run
    logs = trainer.results["log_history"]["admm"]
    residuals = [log["admm_residual"] for log in logs if "admm_residual" in log]
    assert len(residuals) >= 3 and all("admm_rho" in log for log in logs if "admm_residual" in log)
    initial = trainer.results["admm_initial"]["admm_residual"]
    assert residuals[0] == initial  # the first log shows the starting point
    assert trainer.results["admm_final"]["admm_residual"] < 0.5 * initial
    # ADMM pays off: right after the hard prune the model is far better than a one-shot magnitude prune.
    assert trainer.results["after_hard_prune"]["accuracy"] > 0.5


def test_saved_model_reloads_with_equal_logits(gohsp_run):
    trainer, _, _, output_dir = gohsp_run
    files = {p.name for p in output_dir.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_gohsp_vit.py", "gohsp_structure.json"} <= files
    results = json.loads((output_dir / "gohsp_results.json").read_text())
    for key in (
        "dense",
        "pruned",
        "target_sparsity",
        "achieved_sparsity",
        "structure",
        "head_scores",
        "stage_seconds",
    ):
        assert key in results
    assert set(results["stage_seconds"]) == {"ranking", "pruning", "hard_prune", "finetune"}
    assert "accuracy" in results["dense"] and results["pruned"]["params"] < results["dense"]["params"]
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    x = EVAL.pixel_values[:8]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, model(x).logits, atol=1e-6, rtol=1e-5)
    assert reloaded.config.gohsp_provenance["method"] == "gohsp"


@pytest.mark.parametrize("method", ["somp", "sgmp", "random"])
def test_baselines_share_budget_and_export(method, dense_dir, tmp_path):
    args = gohsp_args(
        tmp_path / method,
        method=method,
        target_sparsity=0.4,
        admm_max_steps=40,
        admm_update_steps=10,
        finetune_max_steps=20,
    )
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    trainer.train()
    assert abs(trainer.results["achieved_sparsity"] - 0.4) < 0.005
    steps = {stage: logs[-1]["step"] for stage, logs in trainer.results["log_history"].items()}
    assert sum(steps.values()) == 60  # the same total steps for every method
    assert (tmp_path / method / "model.safetensors").exists()


def test_gradient_accumulation_does_not_rescale_the_penalty(dense_dir, tmp_path):
    """One optimizer step over the same 16 images: GA 1 x 16 and GA 2 x 8 give the same gradient norm."""
    norms = []
    for batch, accumulation in ((16, 1), (8, 2)):
        args = gohsp_args(
            tmp_path / f"ga{accumulation}",
            admm_max_steps=1,
            finetune_max_steps=0,
            finetune_epochs=0,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            logging_steps=1,
            rho=1.0,
            rho_max=1.0,
        )
        trainer = GOHSPTrainer(
            model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN
        )
        trainer.train()
        norms.append(next(log["grad_norm"] for log in trainer.results["log_history"]["admm"] if "grad_norm" in log))
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)


def test_distillation_from_the_dense_model(dense_dir, tmp_path):
    args = gohsp_args(
        tmp_path / "kd",
        admm_max_steps=20,
        admm_update_steps=10,
        finetune_max_steps=10,
        distillation_alpha=0.5,
        logging_steps=5,
    )
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    trainer.train()
    assert trainer.teacher is not None and isinstance(trainer.teacher, ViTForImageClassification)
    losses = [log["loss"] for log in trainer.results["log_history"]["finetune"] if "loss" in log]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    # With the student as its own teacher the KL term vanishes: loss = (1 - alpha) * task loss.
    student = trainer.model.train()
    batch = {"pixel_values": TRAIN.pixel_values[:8], "labels": torch.tensor(TRAIN.labels[:8])}
    trainer.teacher = copy.deepcopy(student).eval()
    with torch.no_grad():
        distilled = trainer.compute_loss(student, batch)
        plain = student(**batch).loss
    torch.testing.assert_close(distilled, 0.5 * plain)


class CNNTeacher(torch.nn.Module):
    """A teacher of another kind than the student, as DeiT distils from a CNN: takes `pixel_values`, returns
    `.logits`."""

    def __init__(self, num_labels: int = 10):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, num_labels)

    def forward(self, pixel_values):
        features = self.conv(pixel_values).relu().mean(dim=(2, 3))
        return ImageClassifierOutput(logits=self.head(features))


def test_distillation_from_a_teacher_model(dense_dir, tmp_path):
    """`teacher_model` replaces the dense model as the teacher of fine-tuning, and the results name it."""
    from gohsp_hf.losses import distillation_loss

    args = gohsp_args(
        tmp_path / "kd", admm_max_steps=4, admm_update_steps=2, finetune_max_steps=4, distillation_alpha=0.5
    )
    teacher = CNNTeacher()
    model = ViTForImageClassification.from_pretrained(dense_dir)
    trainer = GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=teacher)
    trainer.train()
    assert trainer.teacher is teacher and not any(p.requires_grad for p in teacher.parameters())
    assert trainer.results["distillation"] == {
        "teacher": "CNNTeacher",
        "alpha": 0.5,
        "temperature": 2.0,
        "stages": "finetune",
    }
    student = trainer.model.train()
    batch = {"pixel_values": TRAIN.pixel_values[:8], "labels": torch.tensor(TRAIN.labels[:8])}
    with torch.no_grad():
        outputs = student(**batch)
        expected = distillation_loss(outputs.loss, outputs.logits, teacher(batch["pixel_values"]).logits, 0.5, 2.0)
        torch.testing.assert_close(trainer.compute_loss(student, batch), expected)
    # A teacher over other labels is refused at the first distilled step, in words.
    trainer.teacher = CNNTeacher(num_labels=7)
    with pytest.raises(ValueError, match="teacher's logits have shape \\(8, 7\\) and the model's \\(8, 10\\)"):
        trainer.compute_loss(student, batch)


@pytest.mark.parametrize("stages", ["finetune", "all"])
def test_distillation_in_the_pruning_stage_only_when_asked(dense_dir, tmp_path, stages):
    """Before the hard prune (no structure yet) the loss is distilled only with `distillation_stages="all"`."""
    from gohsp_hf.losses import distillation_loss

    args = gohsp_args(tmp_path / stages, soft_pruning="gradual", distillation_alpha=0.5, distillation_stages=stages)
    model = ViTForImageClassification.from_pretrained(dense_dir)
    trainer = GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=CNNTeacher())
    trainer.teacher = trainer.teacher_model  # what train() sets up; the pruning stage has not ended
    assert trainer.structure is None and trainer.method.penalty(model) is None
    batch = {"pixel_values": TRAIN.pixel_values[:8], "labels": torch.tensor(TRAIN.labels[:8])}
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        outputs = model(**batch)
        teacher_logits = trainer.teacher(batch["pixel_values"]).logits
        distilled = distillation_loss(outputs.loss, outputs.logits, teacher_logits, 0.5, 2.0)
        torch.manual_seed(0)
        got = trainer.compute_loss(model, batch)
    torch.testing.assert_close(got, distilled if stages == "all" else outputs.loss)


def test_a_teacher_model_by_folder_and_the_checks_on_it(dense_dir, tmp_path):
    """A folder loads with AutoModelForImageClassification; other labels, or no distillation, are refused."""
    model = ViTForImageClassification.from_pretrained(dense_dir)
    args = gohsp_args(tmp_path / "out", distillation_alpha=0.5)
    trainer = GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=str(dense_dir))
    assert isinstance(trainer.teacher_model, ViTForImageClassification) and trainer.teacher_model is not model
    with pytest.raises(ValueError, match="distillation is off: set `distillation_alpha`"):
        GOHSPTrainer(model=model, args=gohsp_args(tmp_path / "off"), train_dataset=TRAIN, teacher_model=CNNTeacher())
    other = make_model("vit", num_labels=7)
    with pytest.raises(ValueError, match="predicts 7 labels and the model to prune 10"):
        GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=other)
    named = make_model("vit", num_labels=10, id2label={i: f"digit {9 - i}" for i in range(10)})
    model.config.id2label = {i: f"digit {i}" for i in range(10)}
    with pytest.raises(ValueError, match="labels .* are not the model's"):
        GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=named)
    GOHSPTrainer(model=model, args=args, train_dataset=TRAIN, teacher_model=make_model("vit", num_labels=10))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(target_sparsity=0.0), "target_sparsity must be a fraction in \\(0, 1\\)"),
        (dict(target_sparsity=1.0), "target_sparsity must be a fraction in \\(0, 1\\)"),
        (dict(target_sparsity=-0.3), "target_sparsity must be a fraction in \\(0, 1\\)"),
        (dict(target_sparsity=float("nan")), "target_sparsity must be a fraction in \\(0, 1\\)"),
        (dict(method="magic"), "method must be one of"),
        (dict(distillation_stages="pruning"), "distillation_stages must be one of"),
        (dict(ranking_similarity="dot"), "ranking_similarity must be one of"),
        (dict(hidden_layer_norm="rms"), "hidden_layer_norm must be one of"),
        (dict(hidden_layer_norm="masked", soft_pruning="admm"), "hidden_layer_norm='masked' needs soft_pruning"),
    ],
)
def test_bad_config_is_rejected(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        gohsp_args(tmp_path, **overrides)


@pytest.mark.parametrize("target, hidden", [(0.98, False), (0.9999, True)])
def test_unreachable_target_fails_before_training(target, hidden, tmp_path):
    """The whole residual stream (default) reaches further than the blocks alone, but not everywhere."""
    args = gohsp_args(tmp_path / "out", target_sparsity=target, prune_hidden_size=hidden)
    with pytest.raises(ValueError, match="cannot be reached"):
        GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=TRAIN)


def test_output_dir_of_another_run_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    trainer = GOHSPTrainer(
        model=make_model("vit", num_labels=10), args=gohsp_args(tmp_path / "out"), train_dataset=TRAIN
    )
    with pytest.raises(ValueError, match="already holds files.*--overwrite_output_dir"):
        trainer.train()
    assert trainer.state.global_step == 0 and (tmp_path / "out" / "config.json").read_text() == "{}"


def test_unsupported_model_is_refused(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    )
    with pytest.raises(ValueError, match="cannot prune a BertForSequenceClassification"):
        GOHSPTrainer(model=bert, args=gohsp_args(tmp_path / "out"), train_dataset=TRAIN)


def test_push_to_hub_offline_saves_locally_then_fails_clearly(dense_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = gohsp_args(
        tmp_path / "out",
        admm_max_steps=4,
        admm_update_steps=2,
        finetune_max_steps=2,
        push_to_hub=True,
        hub_model_id="someone/tiny-gohsp",
    )
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    with pytest.raises(
        RuntimeError,
        match="The pruned model is saved in .*pushing it to the Hub as someone/tiny-gohsp failed .*hf upload",
    ):
        trainer.train()
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out")  # the local save is complete
    assert isinstance(reloaded, GOHSPViTForImageClassification)
    assert (tmp_path / "out" / "gohsp_results.json").exists()


def test_model_card_and_structure_plot(gohsp_run):
    trainer, _, _, output_dir = gohsp_run
    card = ModelCard.load(output_dir / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-classification"
    assert {"gohsp", "pruning", "vision-transformer"} <= set(meta["tags"]) and meta["metrics"] == ["accuracy"]
    text = card.text
    for needle in (
        "## Dense against pruned",
        "accuracy",
        "parameters",
        "GFLOPs",
        "x fewer FLOPs",  # the measured speed is read against the FLOPs ratio (faster or, if not, why)
        "## Structure",
        "| block |",
        "structure.png",
        "trust_remote_code=True",
        "revision",
        "@inproceedings{yin2023gohsp",
        "python ",
    ):
        assert needle in text, needle
    assert text.count("\n| ") >= 3 + 1  # one row per block, plus the header
    png = (output_dir / "structure.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    speed = trainer.results["speed"]
    assert speed["dense_ms"] > 0 and speed["pruned_ms"] > 0 and speed["speedup"] > 0


def test_card_metadata_names_hub_model_and_dataset(gohsp_run, tmp_path, monkeypatch):
    trainer, *_ = gohsp_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "fm").mkdir(parents=True)  # a local dataset folder, not a Hub id
    text = model_card(trainer.results, trainer.structure, "facebook/deit-small-patch16-224", "uoft-cs/cifar10", "cmd")
    meta = ModelCard(text).data.to_dict()
    assert meta["base_model"] == "facebook/deit-small-patch16-224" and meta["datasets"] == ["uoft-cs/cifar10"]
    local = ModelCard(model_card(trainer.results, trainer.structure, "/tmp/x", "data/fm", "cmd")).data.to_dict()
    assert "base_model" not in local and "datasets" not in local  # local paths are not Hub metadata


def test_the_folder_a_push_uploads_loads_without_gohsp_hf(gohsp_run, tmp_path):
    trainer, _, _, output_dir = gohsp_run
    names = hub_files(output_dir)
    assert {"config.json", "model.safetensors", "configuration_gohsp_vit.py", "modeling_gohsp_vit.py", "README.md",
            "structure.png", "gohsp_structure.json", "gohsp_results.json"} <= set(names)  # fmt: skip
    assert not any("checkpoint" in name or "/" in name for name in names)
    upload = tmp_path / "upload"
    upload.mkdir()
    for name in names:
        shutil.copy(output_dir / name, upload / name)
    x = EVAL.pixel_values[:4]
    torch.save(x, tmp_path / "x.pt")
    result = run_python(
        f"""
        import torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(upload)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            emit(model(torch.load("x.pt")).logits.tolist())
        """,
        tmp_path,
        without_gohsp=True,
    )
    with torch.no_grad():
        expected = trainer.accelerator.unwrap_model(trainer.model).eval()(x).logits
    torch.testing.assert_close(torch.tensor(result), expected, atol=1e-5, rtol=1e-5)


def test_checkpoints_are_pushed_only_when_asked(tmp_path):
    assert checkpoint_patterns(gohsp_args(tmp_path)) == []
    patterns = checkpoint_patterns(gohsp_args(tmp_path, hub_strategy="all_checkpoints"))
    assert "admm/checkpoint-*/*" in patterns and "finetune/checkpoint-*/*" in patterns


def test_admm_schedule_follows_the_stage_length(dense_dir, tmp_path):
    """`admm_updates` updates over the stage, rho from `rho` to `rho_max` at the last one."""
    args = gohsp_args(tmp_path / "out", admm_max_steps=40, admm_update_steps=None, admm_updates=4,
                      finetune_max_steps=4, logging_steps=5, rho=0.05, rho_max=1.0)  # fmt: skip
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    trainer.train()
    schedule = trainer.results["admm_schedule"]
    assert schedule["update_steps"] == 10 and schedule["stage_steps"] == 40
    assert schedule["rho_growth"] == pytest.approx(20 ** (1 / 4))
    rhos = [log["admm_rho"] for log in trainer.results["log_history"]["admm"] if "admm_rho" in log]
    assert len(rhos) == 1 + 4 and rhos[-1] == pytest.approx(1.0)  # the starting point, then every update


def short_hidden_run(dense_dir, output_dir, model=None, **overrides) -> GOHSPTrainer:
    """A 40 + 10 step run at 60% with the residual width pruned, evaluated on digits."""
    args = gohsp_args(output_dir, target_sparsity=0.6, prune_hidden_size=True, admm_max_steps=40,
                      admm_update_steps=10, finetune_max_steps=10, **overrides)  # fmt: skip
    trainer = GOHSPTrainer(
        model=model or ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN,
        eval_dataset=EVAL, compute_metrics=accuracy,
    )  # fmt: skip
    trainer.train()
    return trainer


def test_residual_width_is_allocated_exported_and_reported(dense_dir, tmp_path):
    trainer = short_hidden_run(dense_dir, tmp_path / "out", hidden_sparsity=0.25)
    results = trainer.results
    assert abs(results["achieved_sparsity"] - 0.6) < 0.005
    assert results["hidden_size"] == trainer.model.config.hidden_size == len(trainer.structure.hidden) == 36
    assert trainer.model.config.layer_norm_hidden_size == 48  # exact export: the dense statistics
    for key in ("before_hard_prune", "after_hard_prune", "pruned"):
        assert 0 <= results[key]["accuracy"] <= 1
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    x = EVAL.pixel_values[:8]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, trainer.model.eval()(x).logits, atol=1e-6, rtol=1e-5)


def test_gohsp_without_soft_pruning_fine_tunes_for_both_stages(dense_dir, tmp_path):
    args = gohsp_args(tmp_path / "out", soft_pruning="none", admm_max_steps=20, finetune_max_steps=10)
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    trainer.train()
    assert list(trainer.results["log_history"]) == ["finetune"]
    assert trainer.results["log_history"]["finetune"][-1]["step"] == 30
    assert abs(trainer.results["achieved_sparsity"] - 0.5) < 0.005


def test_callbacks_get_the_model_they_train_or_evaluate(dense_dir, tmp_path):
    class Seen(TrainerCallback):
        def __init__(self):
            self.models = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.models.setdefault(trainer.stage, set()).add(id(model))

        def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
            self.models[next(iter(metrics)).split("_eval_")[0]] = {id(model)}

    seen = Seen()
    dense = ViTForImageClassification.from_pretrained(dense_dir)
    args = gohsp_args(
        tmp_path / "out", soft_pruning="gradual", admm_max_steps=4, admm_update_steps=2, finetune_max_steps=3
    )
    trainer = GOHSPTrainer(model=dense, args=args, train_dataset=TRAIN, eval_dataset=EVAL, compute_metrics=accuracy,
                           callbacks=[seen])  # fmt: skip
    trainer.train()
    assert trainer.model is not dense
    dense_stages, pruned_stages = ("dense", "admm", "before_hard_prune"), ("hard_prune", "finetune", "pruned")
    expected = {stage: {id(dense)} for stage in dense_stages} | {stage: {id(trainer.model)} for stage in pruned_stages}
    assert seen.models == expected


def test_methods_that_cannot_prune_the_residual_width_say_so(tmp_path):
    args = gohsp_args(tmp_path / "out", method="somp", prune_hidden_size=True)
    with pytest.raises(ValueError, match="prune_hidden_size is not supported by method 'somp'"):
        GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=TRAIN)


@pytest.mark.parametrize("allocation, layer_norm", [("global", "dense_statistics"), ("uniform", "dense_statistics"),
                                                    ("global", "rescaled"), ("global", "gradual")])  # fmt: skip
def test_gradual_soft_pruning_ends_on_the_structure_it_exports(dense_dir, tmp_path, allocation, layer_norm):
    """`soft_pruning="gradual"` holds masks that reach the target at the stage's last step, so the hard prune
    changes no prediction, residual width included; with `allocation="uniform"` every block has the same q/k and
    v sizes and all its heads. With `hidden_layer_norm="rescaled"` (or `"gradual"`) the dense model's LayerNorms
    normalise over the kept channels by the end of the stage, so the export to plain LayerNorms is exact too, and
    their hooks are gone after."""
    dense = ViTForImageClassification.from_pretrained(dense_dir)
    trainer = short_hidden_run(dense_dir, tmp_path / "out", dense, soft_pruning="gradual", allocation=allocation,
                               hidden_layer_norm=layer_norm)  # fmt: skip
    results = trainer.results
    assert not any(module._forward_hooks for module in residual_layer_norms(dense))
    assert trainer.model.config.layer_norm_hidden_size == (48 if layer_norm == "dense_statistics" else None)
    assert trainer.model.config.gohsp_provenance["hidden_layer_norm"] == layer_norm
    if allocation == "uniform":
        sizes = trainer.structure.sizes()
        assert all(size["heads"] == 3 and size["qk_dim"] == sizes[0]["qk_dim"] for size in sizes)
    assert list(results["log_history"]) == ["admm", "finetune"]
    sparsities = [log["pruning_sparsity"] for log in results["log_history"]["admm"] if "pruning_sparsity" in log]
    assert sparsities == sorted(sparsities) and len(sparsities) == 4 and sparsities[-1] == pytest.approx(0.6)
    assert results["before_hard_prune"]["loss"] == pytest.approx(results["after_hard_prune"]["loss"], rel=1e-5)
    assert abs(results["achieved_sparsity"] - 0.6) < 0.005


def test_one_schedule_across_stages_is_gohsps_default_only():
    defaults = {m: gohsp_args("unused", method=m).lr_scheduler_across_stages for m in ("gohsp", "gohsp_paper", "somp")}
    assert defaults == {"gohsp": True, "gohsp_paper": False, "somp": False}
    plateau = gohsp_args("unused", lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="epoch")
    assert plateau.lr_scheduler_across_stages is False  # not step-wise: one schedule per stage
    assert gohsp_args("unused", lr_scheduler_across_stages=False).lr_scheduler_across_stages is False


def test_layer_norms_over_the_kept_channels_are_the_default_of_a_long_budget_only():
    """`hidden_layer_norm` resolves by budget: `masked` for gohsp's gradual stage when the pruning stage and
    fine-tuning last at least MASKED_LAYER_NORM_MIN_EPOCHS epochs together (up to MASKED_LAYER_NORM_MAX_SPARSITY),
    the exact dense statistics otherwise."""
    from gohsp_hf.gohsp_config import MASKED_LAYER_NORM_MAX_SPARSITY, MASKED_LAYER_NORM_MIN_EPOCHS

    def resolved(**overrides):
        epochs = dict(admm_max_steps=-1, finetune_max_steps=-1, soft_pruning="gradual")
        return gohsp_args("unused", **{**epochs, **overrides}).hidden_layer_norm

    half = MASKED_LAYER_NORM_MIN_EPOCHS / 2
    assert resolved(admm_epochs=half, finetune_epochs=half) == "masked"
    assert resolved(admm_epochs=1, finetune_epochs=MASKED_LAYER_NORM_MIN_EPOCHS - 1) == "masked"
    assert resolved(admm_epochs=1, finetune_epochs=MASKED_LAYER_NORM_MIN_EPOCHS - 1.5) == "dense_statistics"
    long = dict(admm_epochs=half, finetune_epochs=half)
    assert resolved(**long, finetune_max_steps=60) == "dense_statistics"  # a budget in steps: the rule counts epochs
    assert resolved(**long, soft_pruning="admm") == "dense_statistics"  # no masks before the hard prune
    assert resolved(**long, soft_pruning="none") == "dense_statistics"
    assert resolved(**long, prune_hidden_size=False) == "dense_statistics"
    assert resolved(**long, target_sparsity=MASKED_LAYER_NORM_MAX_SPARSITY) == "masked"
    assert resolved(**long, target_sparsity=0.9) == "dense_statistics"  # a higher target keeps the dense statistics
    assert resolved(**long, method="gohsp_paper") == "dense_statistics"  # its stage is ADMM
    assert resolved(**long, hidden_layer_norm="dense_statistics") == "dense_statistics"  # a user's choice stays
    assert resolved(hidden_layer_norm="rescaled") == "rescaled"


def test_uniform_allocation_refuses_the_knobs_of_a_global_one():
    with pytest.raises(ValueError, match="with allocation='uniform' leave them at 0 and False"):
        gohsp_args("unused", allocation="uniform", block_floor=0.1)
    with pytest.raises(ValueError, match="allocation must be one of"):
        gohsp_args("unused", allocation="greedy")


@pytest.mark.parametrize("across", [False, True])
def test_learning_rate_schedule_per_stage_or_across_stages(dense_dir, tmp_path, across):
    """`lr_scheduler_across_stages` (gohsp's default) runs one linear decay over the 8 + 8 steps, fine-tuning
    continuing where the pruning stage stopped (with a new optimizer); without it each stage decays on its own."""
    args = gohsp_args(tmp_path / "out", soft_pruning="gradual", admm_max_steps=8, admm_update_steps=4,
                      finetune_max_steps=8, logging_steps=1, lr_scheduler_type="linear", warmup_steps=0,
                      learning_rate=1e-3, lr_scheduler_across_stages=across)  # fmt: skip
    trainer = GOHSPTrainer(model=ViTForImageClassification.from_pretrained(dense_dir), args=args, train_dataset=TRAIN)
    trainer.train()
    history = trainer.results["log_history"]
    rates = [
        log["learning_rate"] for stage in ("admm", "finetune") for log in history[stage] if "learning_rate" in log
    ]
    steps = 16 if across else 8
    expected = [1e-3 * (1 - (k % steps) / steps) for k in range(16)]  # the rate each step trained with
    assert rates == pytest.approx(expected)


def test_carry_optimizer_state_continues_adam_across_the_hard_prune(dense_dir, tmp_path):
    """With `carry_optimizer_state`, fine-tuning's optimizer starts from the pruning stage's moments: its step
    count runs on from 8 to 14; without, every parameter restarts at step 1."""
    for carry in (True, False):
        args = gohsp_args(tmp_path / f"out-{carry}", soft_pruning="gradual", admm_max_steps=8, admm_update_steps=4,
                          finetune_max_steps=6, carry_optimizer_state=carry)  # fmt: skip
        dense = ViTForImageClassification.from_pretrained(dense_dir)
        trainer = GOHSPTrainer(model=dense, args=args, train_dataset=TRAIN)
        trainer.train()
        params = list(trainer.model.parameters())
        steps = {trainer.optimizer.state[p]["step"].item() for p in params}
        assert steps == ({14} if carry else {6})
        assert trainer.results.get("carried_optimizer_state") == (len(params) if carry else None)
    assert gohsp_args("unused").carry_optimizer_state is False
