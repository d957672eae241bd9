"""Group importance: the Taylor and Fisher scores are what their formulas say, for every group kind."""

import pytest
import torch
from conftest import make_model

from gohsp_hf.groups import Layout
from gohsp_hf.importance import data_importance, norm_importance


def batches(n=3, size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "pixel_values": torch.randn(size, 3, 32, 32, generator=g),
            "labels": torch.randint(0, 5, (size,), generator=g),
        }
        for _ in range(n)
    ]


def gradients(model, data):
    per_batch = []
    for batch in data:
        model.zero_grad()
        model(**batch).loss.backward()
        per_batch.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    return per_batch


def all_kept(layout):
    return {"head": torch.ones(3, dtype=torch.bool), "qk": torch.ones(16, dtype=torch.bool),
            "v": torch.ones(16, dtype=torch.bool), "mlp": torch.ones(96, dtype=torch.bool)}  # fmt: skip


def test_taylor_is_the_sum_of_abs_w_times_g_over_a_group():
    model, data = make_model("vit"), batches()
    layout = Layout.from_model(model, hidden=True)
    importance = data_importance(model, data, layout, "taylor")
    grads = gradients(model, data)
    params = dict(model.named_parameters())
    g = {n: sum(b[n] for b in grads) for n in params}
    element = {n: (params[n].detach() * g[n]).abs() for n in params}
    prefix = "vit.layers.1"
    # q/k dimension 3 of block 1: row h * 16 + 3 of q and k (weights and biases) in every head.
    rows = [h * 16 + 3 for h in range(3)]
    expected = sum(
        element[f"{prefix}.attention.{p}.{w}"][rows].sum() for p in ("q_proj", "k_proj") for w in ("weight", "bias")
    )
    scores = importance.block_scores(1, all_kept(layout), ("qk", "v", "mlp", "head"))
    torch.testing.assert_close(scores["qk"][3], expected, rtol=1e-4, atol=1e-8)
    # MLP neuron 7: row 7 of fc1 (and bias), column 7 of fc2.
    expected = element[f"{prefix}.mlp.fc1.weight"][7].sum() + element[f"{prefix}.mlp.fc1.bias"][7]
    expected = expected + element[f"{prefix}.mlp.fc2.weight"][:, 7].sum()
    torch.testing.assert_close(scores["mlp"][7], expected, rtol=1e-4, atol=1e-8)
    # Head 2: its q/k/v rows and o_proj columns.
    rows = list(range(32, 48))
    expected = sum(element[f"{prefix}.attention.{p}.{w}"][rows].sum() for p in ("q_proj", "k_proj", "v_proj")
                   for w in ("weight", "bias")) + element[f"{prefix}.attention.o_proj.weight"][:, rows].sum()  # fmt: skip
    torch.testing.assert_close(scores["head"][2], expected, rtol=1e-4, atol=1e-8)
    # Residual channel 5: everything that reads or writes it.
    expected = sum(
        t.select(layout.axes(n).index(("hidden",)), 5).sum()
        for n, t in element.items()
        if n in layout.names() and ("hidden",) in layout.axes(n)
    )
    torch.testing.assert_close(importance.hidden_scores()[5], expected, rtol=1e-4, atol=1e-8)


def test_fisher_squares_each_batch_sum_over_the_whole_group():
    model, data = make_model("vit"), batches()
    layout = Layout.from_model(model)
    importance = data_importance(model, data, layout, "fisher")
    grads = gradients(model, data)
    w = {n: p.detach() for n, p in model.named_parameters()}
    name = "vit.layers.0.mlp"
    expected = sum(
        ((w[f"{name}.fc1.weight"][4] * b[f"{name}.fc1.weight"][4]).sum() + w[f"{name}.fc1.bias"][4] * b[f"{name}.fc1.bias"][4]
         + (w[f"{name}.fc2.weight"][:, 4] * b[f"{name}.fc2.weight"][:, 4]).sum()) ** 2
        for b in grads
    )  # fmt: skip
    scores = importance.block_scores(0, all_kept(layout), ("mlp",))
    torch.testing.assert_close(scores["mlp"][4], expected, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("kind", ["taylor", "fisher", "norm"])
def test_scores_are_non_negative_and_zero_for_zeroed_groups(kind):
    model = make_model("vit")
    with torch.no_grad():
        model.vit.layers[2].mlp.fc1.weight[10].zero_()
        model.vit.layers[2].mlp.fc1.bias[10] = 0
        model.vit.layers[2].mlp.fc2.weight[:, 10].zero_()
    layout = Layout.from_model(model)
    if kind == "norm":
        importance = norm_importance(layout.parameters(model), layout)
    else:
        importance = data_importance(model, batches(), layout, kind)
    scores = importance.block_scores(2, all_kept(layout), ("head", "qk", "v", "mlp"))
    assert all((s >= 0).all() for s in scores.values())
    assert scores["mlp"][10] == 0 and scores["mlp"].sum() > 0


def test_scores_under_no_grad_as_admm_calls_them():
    model = make_model("vit").train()
    layout = Layout.from_model(model)
    with torch.no_grad():
        importance = data_importance(model, batches(), layout, "taylor")
    assert importance.head_scores().shape == (3, 3) and (importance.head_scores() > 0).all()
    assert model.training and all(p.grad is None for p in model.parameters())  # no side effects
