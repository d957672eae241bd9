"""Which models gohsp_hf can prune, and where their prunable blocks live (transformers 5.x names)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# Model class name -> the variant of the pruned architecture that reproduces it.
SUPPORTED_MODELS = {
    "ViTForImageClassification": "vit",
    "DeiTForImageClassification": "deit",
    "DeiTForImageClassificationWithTeacher": "deit_with_teacher",
}


@dataclass(frozen=True)
class ModelDims:
    """The dense sizes of a ViT/DeiT that a pruning structure indexes into."""

    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    intermediate_size: int


def unsupported_model_error(model: object) -> ValueError:
    name = type(model).__name__
    return ValueError(
        f"gohsp_hf cannot prune a {name}: supported models are {', '.join(SUPPORTED_MODELS)} "
        "(dense ViT/DeiT checkpoints loaded with AutoModelForImageClassification)."
    )


def model_variant(model: nn.Module) -> str:
    """`"vit"`, `"deit"` or `"deit_with_teacher"`; a `ValueError` naming the supported models otherwise."""
    variant = SUPPORTED_MODELS.get(type(model).__name__)
    if variant is None:
        raise unsupported_model_error(model)
    return variant


def base_model_prefix(model: nn.Module) -> str:
    """`"vit"` for ViT, `"deit"` for DeiT: the attribute holding the encoder."""
    return "vit" if model_variant(model) == "vit" else "deit"


def model_dims(model: nn.Module) -> ModelDims:
    model_variant(model)
    config = model.config
    heads = config.num_attention_heads
    return ModelDims(
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        intermediate_size=config.intermediate_size,
    )


def block_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """`(name prefix, block)` for every transformer block, e.g. `("vit.layers.0", ViTLayer)`."""
    prefix = base_model_prefix(model)
    return [(f"{prefix}.layers.{i}", layer) for i, layer in enumerate(getattr(model, prefix).layers)]


def load_teacher(teacher: nn.Module | str, student: nn.Module) -> nn.Module:
    """A distillation teacher: `teacher` itself, or the model a Hub id / folder holds. A `ValueError` when its
    labels differ from the student's (count, or names where both configs name them)."""
    if isinstance(teacher, str):
        from transformers import AutoModelForImageClassification

        teacher = AutoModelForImageClassification.from_pretrained(teacher)
    config, student_config = getattr(teacher, "config", None), student.config
    if config is None or getattr(config, "num_labels", None) is None:
        return teacher  # a plain module: the trainer checks its logits against the student's
    if config.num_labels != student_config.num_labels:
        raise ValueError(
            f"The teacher_model predicts {config.num_labels} labels and the model to prune "
            f"{student_config.num_labels}: distil from a teacher trained on the same labels."
        )
    names, student_names = _label_names(config), _label_names(student_config)
    if names and student_names and names != student_names:
        raise ValueError(
            f"The teacher_model's labels {names} are not the model's {student_names} (same order): distil from a "
            "teacher trained on the same labels, or give both configs the same id2label."
        )
    return teacher


def _label_names(config) -> list[str] | None:
    """The config's label names in id order; None for the `LABEL_<i>` placeholders transformers fills in."""
    names = [config.id2label[i] for i in sorted(config.id2label)]
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else names


def teacher_name(teacher: nn.Module) -> str:
    """What the results record as the teacher: its Hub id or folder when it was loaded from one, else its class."""
    config = getattr(teacher, "config", None)
    return getattr(config, "name_or_path", None) or type(teacher).__name__
