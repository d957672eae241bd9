"""The pruning structure: masks, JSON, validation."""

import pytest
import torch
from conftest import make_model, uneven_structure

from gohsp_hf import LayerStructure, PrunedStructure, apply_masks


def test_masks_round_trip():
    structure = uneven_structure(make_model("vit"))
    again = PrunedStructure.from_masks(structure.dims, structure.to_masks())
    assert again == structure
    assert [m["mlp"].sum().item() for m in structure.to_masks()] == [37, 96, 1]


def test_json_round_trip(tmp_path):
    structure = uneven_structure(make_model("deit"))
    assert PrunedStructure.from_json(structure.to_json()) == structure
    structure.save(tmp_path)
    assert PrunedStructure.load(tmp_path) == structure


def test_apply_masks_zeroes_exactly_the_pruned_groups():
    model = make_model("vit")
    structure = PrunedStructure.from_model(model)
    structure.layers[1].heads = [0, 2]  # drop head 1 (rows 16:32 of q/k/v, columns 16:32 of o_proj)
    structure.layers[1].qk_dims = list(range(15))  # drop q/k dim 15 of every kept head
    structure.layers[2].mlp = list(range(90))  # drop neurons 90..95
    apply_masks(model, structure)
    attention = model.vit.layers[1].attention
    assert attention.q_proj.weight[16:32].abs().sum() == 0 and attention.v_proj.bias[16:32].abs().sum() == 0
    assert attention.o_proj.weight[:, 16:32].abs().sum() == 0
    assert attention.k_proj.weight[15].abs().sum() == 0 and attention.k_proj.weight[47].abs().sum() == 0
    assert attention.v_proj.weight[15].abs().sum() > 0  # v keeps all its dimensions
    assert attention.q_proj.weight[14].abs().sum() > 0
    mlp = model.vit.layers[2].mlp
    assert mlp.fc1.weight[90:].abs().sum() == 0 and mlp.fc2.weight[:, 90:].abs().sum() == 0
    assert mlp.fc1.weight[:90].count_nonzero() == 90 * 48
    assert model.vit.layers[0].attention.q_proj.weight.count_nonzero() == 48 * 48


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.layers.pop(), "has 2 blocks but the model has 3"),
        (lambda s: setattr(s.layers[0], "heads", [0, 3]), "heads indices must be distinct and in range"),
        (lambda s: setattr(s.layers[1], "heads", []), "Block 1 keeps no heads"),
        (lambda s: setattr(s.layers[2], "mlp", []), "Block 2 keeps no mlp"),
        (lambda s: setattr(s.layers[2], "qk_dims", [-1, 2]), "qk_dims indices must be distinct"),
        (lambda s: setattr(s.layers[0], "v_dims", [16]), "v_dims indices must be distinct and in range"),
    ],
)
def test_structure_that_does_not_fit_is_rejected(change, message):
    model = make_model("vit")
    structure = PrunedStructure.from_model(model)
    change(structure)
    with pytest.raises(ValueError, match=message):
        apply_masks(model, structure)


def test_structure_for_other_sizes_is_rejected():
    structure = PrunedStructure.from_model(make_model("vit", intermediate_size=64))
    with pytest.raises(ValueError, match="was made for a model with"):
        apply_masks(make_model("vit"), structure)


def test_from_masks_validates():
    structure = PrunedStructure.from_model(make_model("vit"))
    masks = structure.to_masks()
    masks[0]["head"] = torch.zeros(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="Block 0 keeps no heads"):
        PrunedStructure.from_masks(structure.dims, masks)


def test_layer_structure_sorts_indices():
    assert LayerStructure([2, 0], [1], [0], [5, 3]).heads == [0, 2]


def test_masks_cover_exactly_the_prunable_tensors():
    from gohsp_hf.groups import prunable_parameters
    from gohsp_hf.structure import PRUNABLE_TENSORS, block_parameter_masks

    model = make_model("vit")
    group = PrunedStructure.from_model(model).to_masks()[0]
    assert tuple(block_parameter_masks(group)) == PRUNABLE_TENSORS
    assert set(PrunedStructure.from_model(model).parameter_masks(model)) == set(prunable_parameters(model))
