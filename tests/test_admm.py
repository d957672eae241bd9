"""ADMM state: projection, penalty, updates (plain torch, no Trainer)."""

import copy

import torch
from conftest import make_model

from gohsp_hf import ADMMState, BudgetSolver, apply_masks
from gohsp_hf.admm import norm_projection, project
from gohsp_hf.groups import prunable_parameters


def setup(target=0.4):
    model = make_model("vit")
    solver = BudgetSolver.from_model(model, target)
    head_mask = torch.ones(3, 3, dtype=torch.bool)
    head_mask[1, 0] = False
    return model, solver, head_mask


def test_projection_is_a_structured_projection():
    model, solver, head_mask = setup()
    weights = {n: p.detach().clone() for n, p in prunable_parameters(model).items()}
    select = norm_projection(head_mask, solver)
    z, structure = project(weights, model, select)
    again, same = project(z, model, select)
    assert same == structure  # idempotent
    for name in z:
        torch.testing.assert_close(again[name], z[name], atol=0, rtol=0)
    # Z is the masked model's weights.
    masked = dict(apply_masks(copy.deepcopy(model), structure).named_parameters())
    for name in z:
        torch.testing.assert_close(z[name], masked[name].detach(), atol=0, rtol=0)
    assert structure.layers[1].heads == [1, 2]
    assert abs(solver.sparsity(structure) - 0.4) < 0.005


def test_penalty_and_updates():
    model, solver, head_mask = setup()
    state = ADMMState(model, norm_projection(head_mask, solver), solver, rho=0.5, rho_growth=2.0, rho_max=1.5)
    params = prunable_parameters(model)
    expected = 0.25 * sum((params[n] - state.Z[n]).pow(2).sum() for n in params)  # U = 0 at the start
    torch.testing.assert_close(state.penalty(model), expected)
    state.penalty(model).backward()
    name = "vit.layers.0.mlp.fc1.weight"
    torch.testing.assert_close(params[name].grad, 0.5 * (params[name] - state.Z[name]).detach())

    metrics = state.update(model)
    assert state.rho == 1.0 and metrics["admm_rho"] == 1.0
    for n in params:  # U = (W - Z) * rho_old / rho_new after one update from U = 0 (U is the scaled dual)
        torch.testing.assert_close(state.U[n], 0.5 * (params[n].detach() - state.Z[n]))
    # The unscaled dual rho * U is what the scaled form must preserve across the rho change.
    dual = {n: state.rho * state.U[n].clone() for n in params}
    state.update(model)
    assert state.rho == 1.5  # capped at rho_max
    for n in params:  # dual += rho_old * (W - Z_new) (with rho_old = 1.0), then U = dual / rho_new
        expected = (dual[n] + 1.0 * (params[n].detach() - state.Z[n])) / 1.5
        torch.testing.assert_close(state.U[n], expected)
    before = {n: state.U[n].clone() for n in params}
    state.update(model)  # rho stays at its cap, so U is not rescaled
    assert state.rho == 1.5
    for n in params:
        torch.testing.assert_close(state.U[n], before[n] + params[n].detach() - state.Z[n])
    # With W on its projection, the residual is zero.
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state.Z[n])
    assert state.metrics(model)["admm_residual"] == 0.0


def test_state_dict_round_trip():
    model, solver, head_mask = setup()
    state = ADMMState(model, norm_projection(head_mask, solver), solver)
    state.update(model)
    other = ADMMState(make_model("vit", seed=1), norm_projection(head_mask, solver), solver)
    other.load_state_dict(state.state_dict())
    assert other.structure == state.structure and other.rho == state.rho and other.num_updates == 1
    torch.testing.assert_close(other.penalty(model), state.penalty(model))
