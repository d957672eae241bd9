#!/usr/bin/env python
"""Prune a ViT/DeiT image classifier with GOHSP (or a baseline), shaped like transformers'
`run_image_classification.py`.

A Hub model on a Hub dataset (GPUs, Accelerate):

    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/run_gohsp.py \
        --model facebook/deit-small-patch16-224 --dataset_name uoft-cs/cifar10 --ignore_mismatched_sizes \
        --target_sparsity 0.5 --admm_epochs 10 --finetune_epochs 20 --output_dir deit-small-gohsp-50 \
        --per_device_train_batch_size 128 --learning_rate 1e-4 --eval_strategy epoch --bf16

Offline, from scratch on Fashion-MNIST (the README's main command):

    python examples/prepare_fashion_mnist.py --output_dir data/fashion_mnist
    python examples/run_gohsp.py examples/configs/fashion_mnist_tiny.json

A JSON file as the first argument gives the arguments; flags after it override them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from datasets import ClassLabel, DatasetDict, Image, load_dataset
from PIL import Image as PILImage
from torchvision.transforms import v2
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    ViTImageProcessorPil,
    set_seed,
)

from gohsp_hf import SUPPORTED_MODELS, GOHSPConfig, GOHSPTrainer
from gohsp_hf.batch_mixing import BatchMixingMixin
from gohsp_hf.checkpointing import check_output_dir

logger = logging.getLogger(__name__)
IMAGE_COLUMNS, LABEL_COLUMNS = ("image", "img"), ("label", "labels")


@dataclass
class ModelArguments:
    """Which model to prune."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"aliases": ["--model"], "help": "A Hub id or a local folder of a ViT/DeiT image classifier."},
    )
    model_type: str | None = field(
        default=None, metadata={"help": "Build a new model from scratch instead: `vit` or `deit`."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "With --model_type: config values, e.g. `hidden_size=64,num_hidden_layers=4,image_size=28`."
        },
    )
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor id or folder."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the Hub model."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one `hf auth login` saved)."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Allow a new classifier when the dataset has other labels than the model."}
    )
    dense_epochs: float = field(
        default=0.0, metadata={"help": "Train the dense model for these epochs before pruning (for a new model)."}
    )
    dense_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of that dense training (default: --learning_rate)."}
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "With --distillation_alpha: distil fine-tuning from this image classifier (Hub id or folder; "
            "same labels and image size) instead of the dense model."
        },
    )


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset id, or a local folder that datasets.load_dataset reads."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "A folder of training images (imagefolder)."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder of validation images."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out when the dataset has no validation/test split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation images."})
    image_column_name: str | None = field(default=None, metadata={"help": "Image column (default: image or img)."})
    label_column_name: str | None = field(default=None, metadata={"help": "Label column (default: label or labels)."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None:
            raise ValueError("Pass --dataset_name (a Hub id or a local folder) or --train_dir (a folder of images).")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be at least 1, got {value}.")


@dataclass
class AugmentationArguments:
    """How training images are augmented (evaluation images are resized and center-cropped, never augmented)."""

    recipe: str | None = field(
        default=None,
        metadata={
            "help": "`deit`: DeiT's fine-tuning augmentation (RandAugment m9 n2, MixUp 0.8, CutMix 1.0, label "
            "smoothing 0.1, random erasing 0.25, weight decay 0.05) for every value not given explicitly."
        },
    )
    random_resized_crop_min_scale: float = field(
        default=0.08, metadata={"help": "Smallest area fraction RandomResizedCrop keeps (torchvision's default)."}
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "Random horizontal flips; --no_horizontal_flip where they are wrong."}
    )
    rand_augment: bool = field(default=False, metadata={"help": "Apply torchvision's RandAugment."})
    rand_augment_num_ops: int = field(default=2, metadata={"help": "RandAugment: operations per image."})
    rand_augment_magnitude: int = field(default=9, metadata={"help": "RandAugment: magnitude, 0 to 30."})
    random_erasing: float = field(default=0.0, metadata={"help": "Probability of RandomErasing per image."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "MixUp's Beta(alpha, alpha) per batch (0: off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix's Beta(alpha, alpha) per batch (0: off)."})

    def __post_init__(self):
        if self.recipe not in (None, *RECIPES):
            raise ValueError(f"--recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}.")
        if not 0 <= self.random_erasing <= 1:
            raise ValueError(f"--random_erasing is a probability in [0, 1], got {self.random_erasing}.")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("--mixup_alpha and --cutmix_alpha must be >= 0.")


# DeiT (Touvron et al. 2021, Table 9; timm's `rand-m9-mstd0.5-inc1`, mixup 0.8, cutmix 1.0, smoothing 0.1, reprob
# 0.25, weight decay 0.05): applied to the arguments a user left at their defaults.
RECIPES = {
    "deit": {
        "rand_augment": True,
        "rand_augment_num_ops": 2,
        "rand_augment_magnitude": 9,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "random_erasing": 0.25,
        "label_smoothing_factor": 0.1,
        "weight_decay": 0.05,
    }
}


def parse_args(argv: list[str]):
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, AugmentationArguments, GOHSPConfig))
    if argv and argv[0].endswith(".json"):  # a JSON config, then optional overrides
        argv = [*_json_to_argv(json.loads(Path(argv[0]).read_text())), *argv[1:]]
    model_args, data_args, augment_args, args = parser.parse_args_into_dataclasses(args=argv)
    apply_recipe(augment_args, args, argv)
    return model_args, data_args, augment_args, args


def apply_recipe(augment_args: AugmentationArguments, args: GOHSPConfig, argv: list[str]) -> None:
    """Set the recipe's values on every argument the command line did not set itself."""
    if augment_args.recipe is None:
        return
    given = {arg.split("=")[0].removeprefix("--") for arg in argv if arg.startswith("--")}
    for name, value in RECIPES[augment_args.recipe].items():
        if name not in given and f"no_{name}" not in given:
            setattr(augment_args if hasattr(augment_args, name) else args, name, value)


def _json_to_argv(config: dict) -> list[str]:
    argv = []
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *(str(v) for v in values)]
    return argv


# ------------------------------------------------------------------------------------------------ data
def load_data(data_args: DataTrainingArguments, model_args: ModelArguments) -> DatasetDict:
    if data_args.dataset_name is not None:
        dataset = _hub_or_local(
            lambda: load_dataset(
                data_args.dataset_name,
                data_args.dataset_config_name,
                cache_dir=model_args.cache_dir,
                token=model_args.token,
            ),
            data_args.dataset_name,
            "dataset",
        )
    else:
        files = {"train": os.path.join(data_args.train_dir, "**")}
        if data_args.validation_dir is not None:
            files["validation"] = os.path.join(data_args.validation_dir, "**")
        dataset = load_dataset("imagefolder", data_files=files, cache_dir=model_args.cache_dir)
    if "train" not in dataset:
        raise ValueError(f"The dataset has no `train` split (it has {list(dataset)}).")
    evaluation = next((s for s in ("validation", "test") if s in dataset), None)
    if evaluation is None:
        split = dataset["train"].train_test_split(data_args.train_val_split, seed=0)
        dataset = DatasetDict(train=split["train"], validation=split["test"])
    else:
        dataset = DatasetDict(train=dataset["train"], validation=dataset[evaluation])
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if len(dataset[name]) == 0:
            raise ValueError(f"The {name} split of the dataset is empty.")
        if limit is not None:
            dataset[name] = dataset[name].select(range(min(limit, len(dataset[name]))))
    return dataset


def find_columns(dataset, data_args: DataTrainingArguments) -> tuple[str, str]:
    columns = dataset["train"].column_names

    def pick(given, candidates, what, flag):
        if given is not None:
            if given not in columns:
                raise ValueError(f"--{flag} {given!r} is not a column of the dataset (columns: {columns}).")
            return given
        found = next((c for c in candidates if c in columns), None)
        if found is None:
            raise ValueError(
                f"The dataset has no {what} column ({' or '.join(candidates)}); its columns are {columns}. "
                f"Name it with --{flag}."
            )
        return found

    return (
        pick(data_args.image_column_name, IMAGE_COLUMNS, "image", "image_column_name"),
        pick(data_args.label_column_name, LABEL_COLUMNS, "label", "label_column_name"),
    )


def label_names(dataset, label_column: str) -> list[str]:
    feature = dataset["train"].features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return [str(v) for v in sorted(set(dataset["train"][label_column]))]


def image_size(processor) -> tuple[int, int]:
    """(height, width) the model takes, from the image processor (`size` or `crop_size`)."""
    size = getattr(processor, "crop_size", None) or processor.size
    if "height" in size:
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def image_transforms(processor, augment: AugmentationArguments) -> tuple[v2.Compose, v2.Compose]:
    """(train, eval) torchvision transforms from the processor's size, mean and std.

    Train: RandomResizedCrop, RandomHorizontalFlip, optionally RandAugment, then RandomErasing on the normalised
    tensor. Eval: Resize and CenterCrop, as transformers' `run_image_classification.py` does.
    """
    size = image_size(processor)
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(processor.image_mean, processor.image_std)]
    train = [v2.ToImage(), v2.RandomResizedCrop(size, scale=(augment.random_resized_crop_min_scale, 1.0))]
    if augment.horizontal_flip:
        train.append(v2.RandomHorizontalFlip())
    if augment.rand_augment:
        train.append(v2.RandAugment(num_ops=augment.rand_augment_num_ops, magnitude=augment.rand_augment_magnitude))
    train += normalize
    if augment.random_erasing > 0:
        train.append(v2.RandomErasing(p=augment.random_erasing))
    evaluation = [v2.ToImage(), v2.Resize(size), v2.CenterCrop(size), *normalize]
    return v2.Compose(train), v2.Compose(evaluation)


def batch_transform(augment: AugmentationArguments, num_labels: int):
    """MixUp and/or CutMix on training batches (one of the two per batch when both are on), or None."""
    mixes = []
    if augment.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=augment.mixup_alpha, num_classes=num_labels))
    if augment.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=augment.cutmix_alpha, num_classes=num_labels))
    return (v2.RandomChoice(mixes) if len(mixes) > 1 else mixes[0]) if mixes else None


def make_transform(image_transform, image_column: str, label_column: str, names: list[str], num_channels: int):
    """Batch transform: PIL images -> `pixel_values`, labels -> ids (grayscale and RGB both accepted)."""
    mode = "RGB" if num_channels == 3 else "L"
    to_id = {name: i for i, name in enumerate(names)}

    def transform(batch):
        pixel_values = [image_transform(image.convert(mode)) for image in batch[image_column]]
        labels = [label if isinstance(label, int) else to_id[str(label)] for label in batch[label_column]]
        return {"pixel_values": pixel_values, "labels": labels}

    return transform


def collate(examples):
    return {
        "pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples]),
        "labels": torch.tensor([e["labels"] for e in examples]),
    }


def compute_metrics(prediction):
    """Top-1 accuracy, computed locally (evaluate.load("accuracy") needs the Hub)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, -1) == prediction.label_ids).mean())}


# ------------------------------------------------------------------------------------------------ model
def load_model(model_args: ModelArguments, names: list[str]):
    labels = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }
    if model_args.model_name_or_path is None:
        if model_args.model_type not in ("vit", "deit"):
            raise ValueError("Pass --model (a Hub id or a folder), or --model_type vit|deit to build a new model.")
        config = AutoConfig.for_model(model_args.model_type, **labels)
        if model_args.config_overrides:
            config.update_from_string(model_args.config_overrides)
        model = AutoModelForImageClassification.from_config(config)
        size = config.image_size
        processor = ViTImageProcessorPil(
            size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        if config.num_channels == 1:
            processor.image_mean, processor.image_std = [0.5], [0.5]
        return model, processor
    name = model_args.model_name_or_path
    if Path(name).is_dir() and not (Path(name) / "config.json").exists():
        raise ValueError(
            f"{name} is a folder without a config.json; pass a folder written by save_pretrained, or a Hub id."
        )
    hub = dict(revision=model_args.model_revision, cache_dir=model_args.cache_dir, token=model_args.token)
    config = _hub_or_local(lambda: AutoConfig.from_pretrained(name, **hub), name, "model")
    if config.model_type not in ("vit", "deit"):
        raise ValueError(
            f"{name} is a {config.model_type!r} model; gohsp_hf prunes ViT and DeiT image classifiers "
            f"({', '.join(SUPPORTED_MODELS)})."
        )
    model = AutoModelForImageClassification.from_pretrained(
        name, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **labels, **hub
    )
    processor = AutoImageProcessor.from_pretrained(model_args.image_processor_name or name, **hub)
    return model, processor


def _hub_or_local(load, name: str, what: str):
    """Run `load`; when `name` is neither a local folder nor reachable on the Hub, say so in one sentence."""
    try:
        return load()
    except (OSError, ConnectionError, ValueError) as error:
        if Path(name).exists() and "corresponds to no data" in str(error):  # datasets' words for an empty split
            raise ValueError(
                f"A split of the {what} in {name} is empty ({error}); remove or fill that split."
            ) from error
        if Path(name).exists():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "")
        reason = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached or has no such repository"
        raise ValueError(
            f"Could not load the {what} {name!r}: it is not a local folder, and {reason}. On a machine without "
            f"network, save the {what} on a connected machine (save_pretrained / save_to_disk or parquet files) "
            f"and pass that local folder instead."
        ) from error


# ------------------------------------------------------------------------------------------------ main
def drop_unreadable_images(dataset: DatasetDict, image_column: str) -> DatasetDict:
    """Skip images that cannot be decoded, with a warning that counts them (the check is cached by datasets)."""
    for split in dataset:
        feature = dataset[split].features[image_column]
        if not isinstance(feature, Image):
            continue
        raw = dataset[split].cast_column(image_column, Image(decode=False))
        flags = raw.map(
            lambda batch: {"_readable": [_readable(item) for item in batch[image_column]]},
            batched=True,
            remove_columns=raw.column_names,
            desc=f"Checking {split} images",
        )["_readable"]
        bad = [i for i, ok in enumerate(flags) if not ok]
        if len(bad) == len(flags):
            raise ValueError(
                f"The image processor cannot read the dataset's images: none of the {len(flags)} {split} images decode."
            )
        if bad:
            logger.warning(
                f"Skipped {len(bad)} unreadable image(s) of {len(flags)} in the {split} split (rows {bad[:5]}...)."
            )
            dataset[split] = dataset[split].select([i for i, ok in enumerate(flags) if ok])
    return dataset


def _readable(item: dict) -> bool:
    try:
        source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
        with PILImage.open(source) as image:
            image.load()
        return True
    except Exception:
        return False


def check_images(dataset, transform) -> None:
    """Decode a few images up front, so an unreadable dataset fails before any training."""
    try:
        transform(dataset["train"][:2])
    except Exception as error:
        raise ValueError(f"The image processor cannot read the dataset's images: {error}") from error


class DenseTrainer(BatchMixingMixin, Trainer):
    """The Trainer of the dense stage, with the same batch mixing (MixUp / CutMix) as the pruning stages."""

    def __init__(self, train_batch_transform=None, **kwargs):
        super().__init__(**kwargs)
        self.train_batch_transform = train_batch_transform


def train_dense(model, args: GOHSPConfig, model_args: ModelArguments, dataset, processor, mixing) -> None:
    dense_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "dense"),
        num_train_epochs=model_args.dense_epochs,
        learning_rate=model_args.dense_learning_rate or args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        label_smoothing_factor=args.label_smoothing_factor,
        lr_scheduler_type=args.lr_scheduler_type,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to=args.report_to,
        use_cpu=args.use_cpu,
        seed=args.seed,
        remove_unused_columns=False,
        dataloader_num_workers=args.dataloader_num_workers,
        disable_tqdm=args.disable_tqdm,
        bf16=args.bf16,
        fp16=args.fp16,
    )
    trainer = DenseTrainer(
        model=model,
        args=dense_args,
        train_dataset=dataset["train"],
        data_collator=collate,
        processing_class=processor,
        train_batch_transform=mixing,
    )
    trainer.train()
    trainer.save_model(dense_args.output_dir)  # the dense reference, next to the pruned model


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, augment_args, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    args.remove_unused_columns = False  # the image column is turned into pixel_values on the fly
    resume = args.resume_from_checkpoint
    if not resume:
        check_output_dir(args)  # before any data is loaded or any training starts
    args.overwrite_output_dir = True  # from here on, what output_dir holds is this run's own (e.g. dense/)
    set_seed(args.seed)

    dataset = load_data(data_args, model_args)
    image_column, label_column = find_columns(dataset, data_args)
    dataset = drop_unreadable_images(dataset, image_column)
    names = label_names(dataset, label_column)
    dense_dir = Path(args.output_dir) / "dense"
    if resume and model_args.dense_epochs > 0 and (dense_dir / "config.json").exists():
        model_args.model_name_or_path, model_args.dense_epochs = str(dense_dir), 0  # trained before the interruption
    model, processor = load_model(model_args, names)
    train_images, eval_images = image_transforms(processor, augment_args)
    channels = model.config.num_channels
    train_transform = make_transform(train_images, image_column, label_column, names, channels)
    eval_transform = make_transform(eval_images, image_column, label_column, names, channels)
    check_images(dataset, eval_transform)
    # Head ranking and group importance read the training images as evaluation sees them, never augmented.
    calibration = dataset["train"].with_transform(eval_transform)
    dataset = DatasetDict(
        train=dataset["train"].with_transform(train_transform),
        validation=dataset["validation"].with_transform(eval_transform),
    )
    mixing = batch_transform(augment_args, len(names))

    if model_args.dense_epochs > 0:
        train_dense(model, args, model_args, dataset, processor, mixing)
    teacher = None
    if model_args.teacher_model_name_or_path:
        name = model_args.teacher_model_name_or_path
        hub = dict(cache_dir=model_args.cache_dir, token=model_args.token)
        teacher = _hub_or_local(
            lambda: AutoModelForImageClassification.from_pretrained(name, **hub), name, "teacher model"
        )
    trainer = GOHSPTrainer(
        model=model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        calibration_dataset=calibration,
        data_collator=collate,
        processing_class=processor,
        compute_metrics=compute_metrics,
        dataset_name=data_args.dataset_name or data_args.train_dir,
        train_batch_transform=mixing,
        teacher_model=teacher,
    )
    trainer.train(resume_from_checkpoint=resume)
    results = trainer.results
    if trainer.is_world_process_zero():
        reloaded = AutoModelForImageClassification.from_pretrained(args.output_dir)
        print(f"Saved to {args.output_dir}; reloads as {type(reloaded).__name__}.")
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:  # bad input: one sentence, no traceback
        if os.environ.get("GOHSP_TRACEBACK"):
            raise
        sys.exit(f"run_gohsp.py: error: {error}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # gloo sometimes aborts at interpreter exit after all work is done (exit code -6).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
