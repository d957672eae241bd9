"""Bad input gets a clear ValueError, and a save never leaves a half-written model."""

import pytest
import torch
from conftest import make_model, uneven_structure
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    ResNetConfig,
    ResNetForImageClassification,
    SwinConfig,
    SwinForImageClassification,
    ViTConfig,
    ViTModel,
)

from gohsp_hf import PrunedStructure, export_pruned_model, save_pruned_model
from gohsp_hf.modeling_gohsp_vit import GOHSPViTForImageClassification

UNSUPPORTED = {
    "bert": lambda: BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ),
    "resnet": lambda: ResNetForImageClassification(
        ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8)
    ),
    "swin": lambda: SwinForImageClassification(
        SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4)
    ),
    "vit_without_head": lambda: ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_model_names_what_is_supported(name):
    model = UNSUPPORTED[name]()
    with pytest.raises(ValueError, match="supported models are ViTForImageClassification, DeiTForImageClassification"):
        PrunedStructure.from_model(model)
    with pytest.raises(ValueError, match=f"cannot prune a {type(model).__name__}"):
        export_pruned_model(model, uneven_structure(make_model("vit")))


def test_zero_sized_block_in_config_is_rejected():
    from gohsp_hf import GOHSPViTConfig

    with pytest.raises(ValueError, match="Every block needs num_attention_heads >= 1"):
        GOHSPViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=[1, 0], original_head_dim=16)
    with pytest.raises(ValueError, match="intermediate_size has 1 entries but num_hidden_layers is 2"):
        GOHSPViTConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=[5], original_head_dim=16)


def pruned_model():
    dense = make_model("vit")
    return export_pruned_model(dense, uneven_structure(dense))


def test_save_replaces_an_existing_folder_completely(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("from an older save")
    save_pruned_model(pruned_model(), target)
    assert not (target / "stale.txt").exists()
    assert (target / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folders left behind


def test_failed_save_leaves_the_previous_model_intact(tmp_path, monkeypatch):
    target = tmp_path / "model"
    first = pruned_model()
    save_pruned_model(first, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash_half_way(self, save_directory, **kwargs):
        (save_directory / "config.json").write_text("{half")  # a partial write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(GOHSPViTForImageClassification, "save_pretrained", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_pruned_model(pruned_model(), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_wrong_pixel_size_has_a_clear_message():
    with pytest.raises(ValueError, match="resize the images with the model's image processor"):
        pruned_model()(torch.zeros(1, 3, 64, 64))
