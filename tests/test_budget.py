"""The budget solver: hits the parameter target, respects minimums and round_to, ranks by score per parameter."""

import pytest
import torch
from conftest import make_model

from gohsp_hf import BudgetSolver, UnreachableSparsityError, count_parameters, export_pruned_model
from gohsp_hf.model_utils import ModelDims


def random_scores(dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "qk": torch.rand(dims.head_dim, generator=g),
            "v": torch.rand(dims.head_dim, generator=g),
            "mlp": torch.rand(dims.intermediate_size, generator=g),
        }
        for _ in range(dims.num_layers)
    ]


@pytest.mark.parametrize("target", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("round_to", [1, 4])
def test_exported_model_lands_on_the_target(target, round_to):
    model = make_model("vit", hidden_size=64, num_attention_heads=4, intermediate_size=256)
    solver = BudgetSolver.from_model(model, target, round_to=round_to)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 1] = mask[2, 3] = False
    structure = solver.solve(random_scores(solver.dims), mask)
    pruned = export_pruned_model(model, structure)
    achieved = 1 - count_parameters(pruned) / count_parameters(model)
    assert achieved == pytest.approx(solver.sparsity(structure), abs=1e-9)
    assert abs(achieved - target) < 0.005
    for layer in structure.sizes():
        if round_to > 1:
            assert layer["qk_dim"] % round_to == 0 and layer["v_dim"] % round_to == 0 and layer["mlp"] % round_to == 0
    assert [s["heads"] for s in structure.sizes()] == [3, 4, 3]


def test_keeps_the_best_groups_per_parameter():
    dims = ModelDims(hidden_size=16, num_layers=2, num_heads=2, head_dim=4, intermediate_size=8)
    solver = BudgetSolver(dims, total_parameters=2_000, target_sparsity=0.3)
    scores = random_scores(dims, seed=5)
    structure = solver.solve(scores, torch.ones(2, 2, dtype=torch.bool))
    for layer, block in zip(structure.layers, scores):
        for kind, kept in (("qk", layer.qk_dims), ("v", layer.v_dims), ("mlp", layer.mlp)):
            top = torch.argsort(block[kind], descending=True)[: len(kept)]
            assert sorted(top.tolist()) == kept  # a prefix of the ranking
    # MLP neurons are cheap (2E+1) and q/k columns dear (2H(E+1)): equal scores favour neurons.
    flat = [{"qk": torch.ones(4), "v": torch.ones(4), "mlp": torch.ones(8)} for _ in range(2)]
    sizes = solver.solve(flat, torch.ones(2, 2, dtype=torch.bool)).sizes()
    assert sizes[0]["mlp"] == 8 and sizes[0]["qk_dim"] < 4


def test_unreachable_target_is_rejected_before_any_work():
    dims = ModelDims(hidden_size=16, num_layers=2, num_heads=2, head_dim=4, intermediate_size=8)
    with pytest.raises(UnreachableSparsityError, match="target_sparsity 0.950 cannot be reached"):
        BudgetSolver(dims, total_parameters=2_000, target_sparsity=0.95).check_feasible()
    with pytest.raises(ValueError, match="Lower target_sparsity, head_sparsity or min_mlp_width"):
        BudgetSolver(dims, total_parameters=2_000, target_sparsity=0.5, min_mlp_width=8).check_feasible([2, 2])


def test_head_mask_that_overshoots_is_rejected():
    model = make_model("vit")
    solver = BudgetSolver.from_model(model, 0.05)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[:, 0] = True
    with pytest.raises(ValueError, match="head mask alone removes more than target_sparsity"):
        solver.solve(random_scores(solver.dims), mask)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_target_outside_0_1(bad):
    with pytest.raises(ValueError, match="target_sparsity must be in \\(0, 1\\)"):
        BudgetSolver.from_model(make_model("vit"), bad)
