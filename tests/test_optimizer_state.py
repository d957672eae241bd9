"""The optimizer state carried across the hard prune: sliced exactly as the export slices the weights."""

import copy

import pytest
import torch
from conftest import MODEL_CLASSES, make_model, uneven_structure

from gohsp_hf import export_pruned_model
from gohsp_hf.optimizer_state import load_optimizer_state, sliced_optimizer_state


def trained_optimizer(model, pixel_values, steps=2):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        model(pixel_values).logits.square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


@pytest.mark.parametrize("variant", list(MODEL_CLASSES))
@pytest.mark.parametrize("hidden", [False, True])
def test_sliced_moments_are_the_export_of_the_moments(variant, hidden, pixel_values):
    """A model whose weights are Adam's moments, exported, gives the moments the pruned model's optimizer loads."""
    model = make_model(variant)
    optimizer = trained_optimizer(model, pixel_values)
    structure = uneven_structure(model, hidden=hidden)
    state = sliced_optimizer_state(optimizer, model, structure)
    pruned = export_pruned_model(model, structure)
    pruned_params = dict(pruned.named_parameters())
    assert set(state) == set(pruned_params)  # every parameter trained, so every one has a state
    for key in ("exp_avg", "exp_avg_sq"):
        moments = copy.deepcopy(model)
        with torch.no_grad():
            for copied, original in zip(moments.parameters(), model.parameters()):
                copied.copy_(optimizer.state[original][key])
        expected = dict(export_pruned_model(moments, structure).named_parameters())
        for name, entry in state.items():
            torch.testing.assert_close(entry[key], expected[name], rtol=0, atol=0)
    assert all(entry["step"].item() == 2 for entry in state.values())

    fresh = torch.optim.AdamW(pruned.parameters(), lr=1e-3)
    assert load_optimizer_state(fresh, pruned, state) == len(pruned_params)
    pruned(pixel_values).logits.square().mean().backward()
    fresh.step()  # continues: the third step of the same moments
    assert all(fresh.state[p]["step"].item() == 3 for p in pruned.parameters())


def test_a_state_sliced_for_another_structure_is_refused(pixel_values):
    model = make_model("vit")
    state = sliced_optimizer_state(trained_optimizer(model, pixel_values, 1), model, uneven_structure(model, seed=0))
    other = export_pruned_model(model, uneven_structure(model, seed=1, hidden=True))
    with pytest.raises(ValueError, match="sliced for another structure"):
        load_optimizer_state(torch.optim.AdamW(other.parameters()), other, state)


def test_parameters_without_a_usable_state_start_fresh(pixel_values):
    """No state (a frozen parameter) or a state the export cannot slice (not shaped like the parameter)."""
    model = make_model("vit")
    model.classifier.weight.requires_grad_(False)
    optimizer = trained_optimizer(model, pixel_values, 1)
    optimizer.state[model.classifier.bias]["factored"] = torch.zeros(3, 3)
    state = sliced_optimizer_state(optimizer, model, uneven_structure(model))
    assert "classifier.weight" not in state and "classifier.bias" not in state
    assert "vit.layers.0.attention.q_proj.weight" in state
