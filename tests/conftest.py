"""Shared fixtures: tiny random ViT/DeiT models built from configs, and uneven pruning structures."""

import os

# Nothing in the tests may wait on the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`pytest -n 2`) each worker, and every process it starts, computes on one thread: two
# workers with a thread per core each would fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ViTConfig,
    ViTForImageClassification,
)

from gohsp_hf import PrunedStructure  # noqa: E402

TINY = dict(
    image_size=32,
    patch_size=8,
    hidden_size=48,
    num_hidden_layers=3,
    num_attention_heads=3,  # head_dim 16
    intermediate_size=96,
    num_labels=5,
)

MODEL_CLASSES = {
    "vit": (ViTConfig, ViTForImageClassification),
    "deit": (DeiTConfig, DeiTForImageClassification),
    "deit_with_teacher": (DeiTConfig, DeiTForImageClassificationWithTeacher),
}


def make_model(variant: str = "vit", seed: int = 0, **overrides):
    """A tiny random model; position embeddings and tokens get non-zero values so they matter."""
    config_class, model_class = MODEL_CLASSES[variant]
    torch.manual_seed(seed)
    model = model_class(config_class(**{**TINY, **overrides}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "token" in name or "position" in name or name.endswith("bias"):
                param.normal_(0, 0.5)
    return model.eval()


def uneven_structure(model, seed: int = 0, hidden: bool = False) -> PrunedStructure:
    """Different sizes in every block: one block with a single head, odd sizes (MLP 37, qk 5, v 11); with
    `hidden`, 29 of the 48 residual channels kept too."""
    generator = torch.Generator().manual_seed(seed)
    structure = PrunedStructure.from_model(model)
    d = structure.dims

    def pick(total, keep):
        return torch.randperm(total, generator=generator)[:keep].tolist()

    sizes = [(1, 5, 11, 37), (2, 16, 3, 96), (3, 9, 16, 1)]
    for layer, (heads, qk, v, mlp) in zip(structure.layers, sizes * d.num_layers):
        layer.heads, layer.qk_dims = sorted(pick(d.num_heads, heads)), sorted(pick(d.head_dim, qk))
        layer.v_dims, layer.mlp = sorted(pick(d.head_dim, v)), sorted(pick(d.intermediate_size, mlp))
    if hidden:
        structure.hidden = sorted(pick(d.hidden_size, 29))
    structure.validate()
    return structure


@pytest.fixture
def pixel_values():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
