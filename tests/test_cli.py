"""examples/run_gohsp.py: a real run in a subprocess, and its clear errors on bad input."""

import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage
from sklearn.datasets import load_digits
from transformers import (
    AutoModelForImageClassification,
    BertConfig,
    BertForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "run_gohsp.py"
TINY_MODEL = [
    "--model_type", "vit",
    "--config_overrides", "image_size=16,patch_size=4,hidden_size=32,num_hidden_layers=2,num_attention_heads=2,"
    "intermediate_size=64",
]  # fmt: skip
FAST = [
    "--admm_max_steps", "6", "--admm_update_steps", "3", "--finetune_max_steps", "4", "--ranking_samples", "16",
    "--per_device_train_batch_size", "16", "--use_cpu", "--report_to", "none", "--save_strategy", "no",
    "--disable_tqdm", "true", "--logging_steps", "2",
    "--round_to", "1",  # a chunk of 8 neurons is ~3% of this tiny model: the budget could not land within 0.5 points
]  # fmt: skip


def load_cli():
    spec = importlib.util.spec_from_file_location("run_gohsp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_gohsp"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def png(array) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array.astype("uint8"), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def digits_parquet(folder: Path, image_column="img", label_column="label", corrupt=False) -> Path:
    """Real digits as grayscale PNGs, in the Hub's parquet layout (train/test files)."""
    images, labels = load_digits(return_X_y=True)
    features = {image_column: Image()}
    if label_column:
        features[label_column] = ClassLabel(names=[str(i) for i in range(10)])
    folder.mkdir(parents=True)
    for split, rows in (("train", slice(0, 300)), ("test", slice(300, 400))):
        data = {
            image_column: [
                {"bytes": b"not an image" if corrupt else png(x.reshape(8, 8) * 16), "path": None}
                for x in images[rows]
            ]
        }
        if label_column:
            data[label_column] = labels[rows].tolist()
        Dataset.from_dict(data, features=Features(features)).to_parquet(
            str(folder / f"{split}-00000-of-00001.parquet")
        )
    return folder


def test_cli_runs_the_whole_pipeline(tmp_path):
    data = digits_parquet(tmp_path / "digits")  # grayscale images, RGB model: converted on the fly
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [
        sys.executable,
        str(SCRIPT),
        *TINY_MODEL,
        "--dataset_name",
        str(data),
        "--dense_epochs",
        "1",
        "--target_sparsity",
        "0.4",
        "--output_dir",
        str(out),
        *FAST,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[gohsp_hf] GOHSP done." in result.stderr and "parameters" in result.stderr  # the summary table
    assert "reloads as GOHSPViTForImageClassification" in result.stdout
    results = json.loads((out / "gohsp_results.json").read_text())
    assert abs(results["achieved_sparsity"] - 0.4) < 0.005 and "accuracy" in results["pruned"]
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.id2label[3] == "3" and (out / "preprocessor_config.json").exists()


def test_json_config_with_overrides():
    cli = load_cli()
    model_args, data_args, _, args = cli.parse_args(
        [str(REPO / "examples" / "configs" / "fashion_mnist_tiny.json"), "--target_sparsity", "0.3"]
    )
    assert args.target_sparsity == 0.3 and model_args.model_type == "vit" and data_args.dataset_name
    _, _, augment, args = cli.parse_args(["--model", "some/model", "--dataset_name", "x", "--output_dir", "o"])
    assert args.head_sparsity is None  # heads compete in the allocation
    assert augment.horizontal_flip and not augment.rand_augment and augment.mixup_alpha == 0


def run_main(tmp_path, *extra):
    cli = load_cli()
    return cli.main([*TINY_MODEL, "--output_dir", str(tmp_path / "out"), *FAST, *extra])


def test_dataset_without_label_column(tmp_path):
    data = digits_parquet(tmp_path / "d", label_column=None)
    with pytest.raises(ValueError, match="The dataset has no label column \\(label or labels\\)"):
        run_main(tmp_path, "--dataset_name", str(data))


def test_dataset_with_unreadable_images(tmp_path):
    data = digits_parquet(tmp_path / "d", corrupt=True)
    with pytest.raises(ValueError, match="The image processor cannot read the dataset's images"):
        run_main(tmp_path, "--dataset_name", str(data))


def test_named_column_that_does_not_exist(tmp_path):
    data = digits_parquet(tmp_path / "d")
    with pytest.raises(ValueError, match="--label_column_name 'fine_label' is not a column"):
        run_main(tmp_path, "--dataset_name", str(data), "--label_column_name", "fine_label")


def test_hub_ids_while_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = digits_parquet(tmp_path / "d")
    with pytest.raises(ValueError, match="Could not load the model 'facebook/deit-small-patch16-224'.*local folder"):
        load_cli().main(
            [
                "--model",
                "facebook/deit-small-patch16-224",
                "--dataset_name",
                str(data),
                "--output_dir",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
    with pytest.raises(ValueError, match="Could not load the dataset 'uoft-cs/cifar10'.*HF_HUB_OFFLINE is set"):
        run_main(tmp_path, "--dataset_name", "uoft-cs/cifar10")


def test_model_that_is_not_vit(tmp_path):
    bert = tmp_path / "bert"
    BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(bert)
    data = digits_parquet(tmp_path / "d")
    with pytest.raises(ValueError, match="is a 'bert' model; gohsp_hf prunes ViT and DeiT"):
        load_cli().main(
            ["--model", str(bert), "--dataset_name", str(data), "--output_dir", str(tmp_path / "o"), *FAST]
        )


def test_output_dir_of_another_run(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.safetensors").write_bytes(b"precious")
    with pytest.raises(ValueError, match="already holds files"):
        run_main(tmp_path, "--dataset_name", "anything")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"precious"


def test_max_train_samples_zero(tmp_path):
    with pytest.raises(ValueError, match="--max_train_samples must be at least 1"):
        run_main(tmp_path, "--dataset_name", "anything", "--max_train_samples", "0")


def test_image_folders(tmp_path):
    images, labels = load_digits(return_X_y=True)
    for i, (x, y) in enumerate(zip(images[:40], labels[:40])):
        folder = tmp_path / "train" / f"class_{y}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(png(x.reshape(8, 8) * 16))
    cli = load_cli()
    data_args = cli.DataTrainingArguments(train_dir=str(tmp_path / "train"))
    dataset = cli.load_data(data_args, cli.ModelArguments())
    assert cli.find_columns(dataset, data_args) == ("image", "label")
    assert len(dataset["train"]) + len(dataset["validation"]) == 40


def test_folder_without_config(tmp_path):
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ValueError, match="is a folder without a config.json"):
        load_cli().main(["--model", str(tmp_path / "empty_model"), "--dataset_name", str(digits_parquet(tmp_path / "d")),
                         "--output_dir", str(tmp_path / "o"), *FAST])  # fmt: skip


@pytest.mark.parametrize("kind", ["resnet", "swin"])
def test_other_vision_models(kind, tmp_path):
    from transformers import ResNetConfig, ResNetForImageClassification, SwinConfig, SwinForImageClassification

    if kind == "resnet":
        model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8))
    else:
        model = SwinForImageClassification(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                      num_heads=[1, 2], window_size=4))  # fmt: skip
    model.save_pretrained(tmp_path / kind)
    with pytest.raises(ValueError, match=f"is a '{kind}' model; gohsp_hf prunes ViT and DeiT"):
        load_cli().main(["--model", str(tmp_path / kind), "--dataset_name", str(digits_parquet(tmp_path / "d")),
                         "--output_dir", str(tmp_path / "o"), *FAST])  # fmt: skip


def test_empty_split(tmp_path):
    data = digits_parquet(tmp_path / "d")
    empty = Dataset.from_dict({"img": [], "label": []}, features=Features({"img": Image(), "label": Value("int64")}))
    empty.to_parquet(str(data / "test-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="A split of the dataset in .* is empty"):
        run_main(tmp_path, "--dataset_name", str(data))


def test_corrupt_images_are_skipped_with_a_count(tmp_path, caplog):
    data = digits_parquet(tmp_path / "d")
    train = Dataset.from_parquet(str(data / "train-00000-of-00001.parquet"))
    rows = train.cast_column("img", Image(decode=False)).to_dict()
    for i in (3, 50, 77):
        rows["img"][i] = {"bytes": b"\x89PNG broken", "path": None}
    features = Features({"img": Image(), "label": train.features["label"]})
    Dataset.from_dict(rows, features=features).to_parquet(str(data / "train-00000-of-00001.parquet"))
    cli = load_cli()
    data_args = cli.DataTrainingArguments(dataset_name=str(data))
    dataset = cli.load_data(data_args, cli.ModelArguments())
    with caplog.at_level("WARNING"):
        dataset = cli.drop_unreadable_images(dataset, "img")
    assert "Skipped 3 unreadable image(s) of 300 in the train split" in caplog.text
    assert len(dataset["train"]) == 297 and len(dataset["validation"]) == 100


def test_rgb_images_for_a_grayscale_model():
    cli = load_cli()
    from transformers import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5])
    for images in cli.image_transforms(processor, cli.AugmentationArguments()):  # train and eval
        transform = cli.make_transform(images, "img", "label", ["a", "b"], num_channels=1)
        out = transform({"img": [PILImage.new("RGB", (10, 12), (200, 10, 10))], "label": [1]})
        assert tuple(out["pixel_values"][0].shape) == (1, 8, 8) and out["labels"] == [1]


def test_errors_print_one_line_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--model", "facebook/deit-small-patch16-224", "--dataset_name",
                             "x", "--output_dir", str(tmp_path / "o"), "--target_sparsity", "1.5"],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "run_gohsp.py: error: target_sparsity must be a fraction in (0, 1), got 1.5."
    )


# ---------------------------------------------------------------------------------------------------- augmentation
def augment_args(**overrides):
    cli = load_cli()
    return cli, cli.AugmentationArguments(**overrides)


def test_training_transform_is_random_and_evaluation_transform_is_not():
    from transformers import ViTImageProcessorPil

    cli, augment = augment_args(rand_augment=True, random_erasing=0.5)
    processor = ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    train, evaluation = cli.image_transforms(processor, augment)
    image = PILImage.fromarray((load_digits().images[0] * 16).astype("uint8")).convert("RGB")
    assert not torch.equal(train(image), train(image))  # random crops, flips, RandAugment, erasing
    assert torch.equal(evaluation(image), evaluation(image)) and evaluation(image).shape == (3, 16, 16)
    assert train(image).shape == (3, 16, 16) and train(image).dtype == torch.float32


def test_mixup_and_cutmix_give_soft_labels_that_sum_to_one():
    cli, augment = augment_args(mixup_alpha=0.8, cutmix_alpha=1.0)
    mix = cli.batch_transform(augment, num_labels=10)
    pixels, labels = mix(torch.randn(8, 3, 16, 16), torch.arange(8))
    assert labels.shape == (8, 10) and labels.is_floating_point()
    torch.testing.assert_close(labels.sum(1), torch.ones(8))
    assert cli.batch_transform(cli.AugmentationArguments(), 10) is None


def test_deit_recipe_fills_what_was_not_given():
    cli = load_cli()
    argv = ["--model_type", "vit", "--dataset_name", "x", "--output_dir", "o", "--recipe", "deit", "--mixup_alpha",
            "0.2", "--use_cpu"]  # fmt: skip
    _, _, augment, args = cli.parse_args(argv)
    assert augment.rand_augment and augment.rand_augment_magnitude == 9 and augment.cutmix_alpha == 1.0
    assert augment.mixup_alpha == 0.2  # given on the command line: kept
    assert args.label_smoothing_factor == 0.1 and augment.random_erasing == 0.25 and args.weight_decay == 0.05


def test_soft_labels_are_smoothed_once():
    from gohsp_hf.losses import soft_target_cross_entropy

    logits, labels = torch.randn(6, 5), torch.tensor([0, 3, 1, 4, 2, 2])
    hard = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    soft = soft_target_cross_entropy(logits, torch.nn.functional.one_hot(labels, 5).float(), label_smoothing=0.1)
    torch.testing.assert_close(soft, hard)  # one-hot soft labels == hard labels, smoothing applied the same way


def test_cli_with_the_deit_recipe_and_distillation(tmp_path):
    """MixUp/CutMix soft labels through the dense stage, ADMM and distillation from a teacher folder (another,
    smaller ViT); the saved model reloads."""
    data = digits_parquet(tmp_path / "digits")
    out, teacher = tmp_path / "out", tmp_path / "teacher"
    ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32, num_labels=10)).save_pretrained(teacher)  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, str(SCRIPT), *TINY_MODEL, "--dataset_name", str(data), "--dense_epochs", "1",
               "--recipe", "deit", "--distillation_alpha", "0.5", "--teacher_model_name_or_path", str(teacher),
               "--soft_pruning", "admm", "--target_sparsity", "0.4", "--output_dir", str(out), *FAST]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "gohsp_results.json").read_text())
    assert results["distillation"] == {"teacher": str(teacher), "alpha": 0.5, "temperature": 2.0, "stages": "finetune"}
    losses = [log["loss"] for stage in results["log_history"].values() for log in stage if "loss" in log]
    assert losses and all(math.isfinite(x) for x in losses)
    assert 0 <= results["pruned"]["accuracy"] <= 1
    assert AutoModelForImageClassification.from_pretrained(out).config.model_type == "gohsp_vit"


def test_ranking_reads_unaugmented_images(tmp_path):
    """Head ranking and group importance read calibration images with the evaluation transform: the same ranking
    with and without --rand_augment."""
    data = digits_parquet(tmp_path / "digits")
    scores = []
    for extra in ([], ["--rand_augment", "--random_erasing", "0.5"]):
        out = tmp_path / f"out{len(extra)}"
        command = [sys.executable, str(SCRIPT), *TINY_MODEL, "--dataset_name", str(data), "--output_dir", str(out),
                   "--seed", "0", *FAST, *extra]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        scores.append(json.loads((out / "gohsp_results.json").read_text())["head_scores"])
    assert scores[0] == scores[1]
