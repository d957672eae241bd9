"""Masked dense model == exported pruned model, for every supported variant and attention backend."""

import copy

import pytest
import torch
from conftest import MODEL_CLASSES, make_model, uneven_structure

from gohsp_hf import (
    GOHSPViTForImageClassification,
    PrunedStructure,
    apply_masks,
    count_flops,
    count_parameters,
    export_pruned_model,
)

TOL = dict(atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", list(MODEL_CLASSES))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("hidden", [False, True])
def test_masked_model_equals_exported(variant, attn, hidden, pixel_values):
    dense = make_model(variant)
    dense.set_attn_implementation(attn)
    structure = uneven_structure(dense, hidden=hidden)
    masked = apply_masks(copy.deepcopy(dense), structure)
    pruned = export_pruned_model(masked, structure).eval()

    assert isinstance(pruned, GOHSPViTForImageClassification)
    assert pruned.config._attn_implementation == attn
    assert pruned.config.num_attention_heads == [1, 2, 3]
    assert pruned.config.qk_head_dim == [5, 16, 9]
    assert pruned.config.v_head_dim == [11, 3, 16]
    assert pruned.config.intermediate_size == [37, 96, 1]
    assert pruned.config.hidden_size == (29 if hidden else 48)
    assert pruned.config.layer_norm_hidden_size == (48 if hidden else None)
    with torch.no_grad():
        expected, got = masked(pixel_values), pruned(pixel_values)
    torch.testing.assert_close(got.logits, expected.logits, **TOL)
    if variant == "deit_with_teacher":
        torch.testing.assert_close(got.cls_logits, expected.cls_logits, **TOL)
        torch.testing.assert_close(got.distillation_logits, expected.distillation_logits, **TOL)
    # Pruning must have changed the function, or the comparison above proves nothing.
    assert (dense(pixel_values).logits - expected.logits).abs().max() > 1e-3


def test_padded_head_sizes_are_exact_and_reach_sdpa_with_one_size(pixel_values, monkeypatch):
    """Blocks with q/k size != v size pad to one head size before SDPA; the logits do not change."""
    dense = make_model("vit")
    structure = uneven_structure(dense)
    pruned = export_pruned_model(apply_masks(copy.deepcopy(dense), structure), structure).eval()
    assert pruned.config._attn_implementation == "sdpa" and pruned.config.pad_head_dims
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, *args, **kwargs):
        seen.append((query.shape[-1], key.shape[-1], value.shape[-1]))
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        padded = pruned(pixel_values).logits
        pruned.config.pad_head_dims = False
        unpadded = pruned(pixel_values).logits
    widths = [max(qk, v) for qk, v in zip(pruned.config.qk_head_dim, pruned.config.v_head_dim)]
    assert seen[: len(widths)] == [(w, w, w) for w in widths]  # padded: one size per block
    assert seen[len(widths)] == (5, 5, 11)  # unpadded: the block's own sizes
    torch.testing.assert_close(padded, unpadded, **TOL)


def test_export_ignores_values_of_pruned_groups(pixel_values):
    """The exported model depends only on kept weights: exporting the unmasked model gives the same result."""
    dense = make_model("vit")
    structure = uneven_structure(dense, seed=3)
    from_dense = export_pruned_model(dense, structure)
    from_masked = export_pruned_model(apply_masks(copy.deepcopy(dense), structure), structure)
    for (name, a), (_, b) in zip(from_dense.state_dict().items(), from_masked.state_dict().items()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_export_without_qkv_bias(pixel_values):
    dense = make_model("vit", qkv_bias=False)
    structure = uneven_structure(dense)
    masked = apply_masks(copy.deepcopy(dense), structure)
    pruned = export_pruned_model(masked, structure)
    torch.testing.assert_close(pruned(pixel_values).logits, masked(pixel_values).logits, **TOL)


def test_sdpa_and_eager_agree_and_attentions_in_eager(pixel_values):
    dense = make_model("deit")
    pruned = export_pruned_model(dense, uneven_structure(dense)).eval()
    sdpa = pruned(pixel_values).logits
    pruned.set_attn_implementation("eager")
    out = pruned(pixel_values, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(out.logits, sdpa, **TOL)
    tokens = 2 + (32 // 8) ** 2
    assert [a.shape for a in out.attentions] == [(4, h, tokens, tokens) for h in (1, 2, 3)]
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(4, 2, tokens), atol=1e-5, rtol=0)
    assert len(out.hidden_states) == 4


def test_dense_structure_export_is_identity(pixel_values):
    dense = make_model("vit")
    pruned = export_pruned_model(dense, PrunedStructure.from_model(dense))
    torch.testing.assert_close(pruned(pixel_values).logits, dense(pixel_values).logits, **TOL)
    assert count_parameters(pruned) == count_parameters(dense)
    assert count_flops(pruned) == count_flops(dense)


def test_counts_shrink_by_the_pruned_groups():
    dense = make_model("vit")
    structure = uneven_structure(dense)
    pruned = export_pruned_model(dense, structure)
    hidden, removed = 48, 0
    for layer in structure.sizes():
        qk, v, mlp = layer["heads"] * layer["qk_dim"], layer["heads"] * layer["v_dim"], layer["mlp"]
        removed += 2 * (48 - qk) * (hidden + 1)  # q and k rows with their biases
        removed += (48 - v) * (2 * hidden + 1)  # v rows, v bias, o_proj columns
        removed += (96 - mlp) * (2 * hidden + 1)  # fc1 rows, fc1 bias, fc2 columns
    assert count_parameters(dense) - count_parameters(pruned) == removed
    assert count_flops(pruned) < count_flops(dense)
    # The count includes attention (QK^T and AV), whichever attention backend the model uses.
    pruned.set_attn_implementation("sdpa")
    sdpa_flops = count_flops(pruned)
    pruned.set_attn_implementation("eager")
    assert count_flops(pruned) == sdpa_flops
    assert pruned.config._attn_implementation == "eager"


def test_exported_model_trains():
    dense = make_model("deit_with_teacher")
    pruned = export_pruned_model(dense, uneven_structure(dense)).train()
    before = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    out = pruned(torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 3]))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    torch.optim.SGD(pruned.parameters(), lr=0.1).step()
    changed = [n for n, p in pruned.named_parameters() if not torch.equal(p, before[n])]
    assert "vit.layers.0.attention.q_proj.weight" in changed and "cls_classifier.weight" in changed


def test_plain_layer_norms_over_the_kept_channels(pixel_values):
    """`layer_norm="plain"` gives ordinary LayerNorms: the model changes (fine-tuning brings it back); with the
    residual width kept, both choices are the same model."""
    dense = make_model("vit")
    narrowed = uneven_structure(dense, hidden=True)
    masked = apply_masks(copy.deepcopy(dense), narrowed)
    plain = export_pruned_model(masked, narrowed, layer_norm="plain").eval()
    assert plain.config.layer_norm_hidden_size is None and plain.config.hidden_size == 29
    with torch.no_grad():
        assert (plain(pixel_values).logits - masked(pixel_values).logits).abs().max() > 1e-3
    kept = uneven_structure(dense)
    a, b = (export_pruned_model(dense, kept, layer_norm=mode).eval() for mode in ("plain", "dense_statistics"))
    torch.testing.assert_close(a(pixel_values).logits, b(pixel_values).logits, atol=0, rtol=0)
    with pytest.raises(ValueError, match="layer_norm must be one of"):
        export_pruned_model(dense, kept, layer_norm="rms")


@pytest.mark.parametrize("variant", list(MODEL_CLASSES))
def test_masked_layer_norms_make_the_plain_export_exact(variant, pixel_values):
    """With `MaskedLayerNorms` the masked dense model normalises over the kept channels: it equals the export with
    plain LayerNorms; without a mask it is the dense-statistics model; `remove` restores the model."""
    from gohsp_hf.layer_norms import MaskedLayerNorms, kept_channel_layer_norm

    dense = make_model(variant)
    structure = uneven_structure(dense, hidden=True)
    masked = apply_masks(copy.deepcopy(dense), structure)
    norms = MaskedLayerNorms(masked)
    assert len(norms.handles) == 2 * 3 + 1  # two per block and the final one
    plain = export_pruned_model(masked, structure, layer_norm="plain").eval()
    exact = export_pruned_model(masked, structure).eval()
    with torch.no_grad():
        dense_statistics = masked(pixel_values).logits
        torch.testing.assert_close(dense_statistics, exact(pixel_values).logits, **TOL)
        norms.set_mask(structure.hidden_mask())
        torch.testing.assert_close(masked(pixel_values).logits, plain(pixel_values).logits, **TOL)
        assert (masked(pixel_values).logits - dense_statistics).abs().max() > 1e-3  # the statistics did change
        norms.remove()
        torch.testing.assert_close(masked(pixel_values).logits, dense_statistics, atol=0, rtol=0)
    # The function itself: F.layer_norm of the kept channels, zero (the masked bias) elsewhere.
    x, keep = torch.randn(2, 5, 8) * 3 + 1, torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    weight, bias = torch.randn(8) * keep, torch.randn(8) * keep
    out = kept_channel_layer_norm(x, keep, weight, bias, 1e-6)
    reference = torch.nn.functional.layer_norm(x[..., keep], (5,), weight[keep], bias[keep], 1e-6)
    torch.testing.assert_close(out[..., keep], reference, **TOL)
    assert not out[..., ~keep].any()
    # The removed channels at full weight (zeros, as in the masked model): the dense LayerNorm's statistics.
    x = x * keep
    dense_statistics = torch.nn.functional.layer_norm(x, (8,), weight, bias, 1e-6)
    torch.testing.assert_close(kept_channel_layer_norm(x, keep, weight, bias, 1e-6, removed_weight=1.0),
                               dense_statistics, **TOL)  # fmt: skip
    norms = MaskedLayerNorms(make_model("vit"), ramp_steps=4)
    weights = []
    for step in (1, 2, 4, 6):
        norms.at_step(step)
        weights.append(norms.removed_weight)
    assert weights == [0.75, 0.5, 0.0, 0.0]


def test_rescaled_layer_norms_keep_the_output_size(pixel_values):
    """`rescale`: each cut multiplies the LayerNorm weights by sqrt(channels before / kept), so on tokens whose kept
    channels have zero mean the masked model's LayerNorms give what the dense statistics gave."""
    from gohsp_hf.layer_norms import MaskedLayerNorms

    model = apply_masks(make_model("vit"), uneven_structure(make_model("vit"), hidden=True))
    norms = MaskedLayerNorms(model, rescale=True)
    norm, weight = norms.modules[0], norms.modules[0].weight.detach().clone()
    keep = uneven_structure(model, hidden=True).hidden_mask()  # 29 of 48
    x = torch.randn(2, 5, 48) * keep
    x = (x - x.sum(-1, keepdim=True) / 29) * keep  # zero mean over the kept channels, zero elsewhere
    with torch.no_grad():
        dense_statistics = norm(x)
        norms.set_mask(keep)
        torch.testing.assert_close(norm.weight, weight * (48 / 29) ** 0.5)
        torch.testing.assert_close(norm(x) * keep, dense_statistics * keep, **TOL)
        fewer = keep.clone()
        fewer[keep.nonzero()[:9]] = False  # 20 kept
        norms.set_mask(fewer)
        torch.testing.assert_close(norm.weight, weight * (48 / 20) ** 0.5)
        norms.set_mask(fewer, rescale_weights=False)  # a resumed run: the checkpoint's weights have it already
        torch.testing.assert_close(norm.weight, weight * (48 / 20) ** 0.5)


def test_counts_shrink_with_the_residual_width():
    dense = make_model("deit_with_teacher")
    structure = uneven_structure(dense, hidden=True)
    pruned = export_pruned_model(dense, structure)
    from gohsp_hf import BudgetSolver

    solver = BudgetSolver.from_model(dense, 0.5, hidden=True)
    assert count_parameters(pruned) == round((1 - solver.sparsity(structure)) * count_parameters(dense))
    assert pruned.vit.embeddings.position_embeddings.shape[-1] == 29
    assert pruned.cls_classifier.weight.shape == (5, 29) and pruned.distillation_classifier.weight.shape == (5, 29)


def test_dense_statistics_layer_norm_values_and_gradients():
    """The narrowed LayerNorm equals a dense LayerNorm over the kept channels plus zeros, in its fused inference
    path and in its training path, and the training path's gradients are the dense one's."""
    from gohsp_hf import GOHSPViTConfig
    from gohsp_hf.modeling_gohsp_vit import GOHSPViTLayerNorm

    config = GOHSPViTConfig(hidden_size=40, layer_norm_hidden_size=64, num_attention_heads=4, num_hidden_layers=1)
    norm = GOHSPViTLayerNorm(config)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    x = (torch.randn(2, 5, 40) * 3 + 1).requires_grad_()

    def reference(x, weight, bias):
        pad = (0, 24)
        full = torch.nn.functional.pad(x, pad)
        out = torch.nn.functional.layer_norm(full, (64,), torch.nn.functional.pad(weight, pad),
                                             torch.nn.functional.pad(bias, pad), config.layer_norm_eps)  # fmt: skip
        return out[..., :40]

    with torch.no_grad():
        torch.testing.assert_close(norm(x), reference(x, norm.weight, norm.bias), **TOL)
    upstream = torch.randn(2, 5, 40)
    grads = [torch.autograd.grad((f(x) * upstream).sum(), (x, norm.weight, norm.bias))
             for f in (norm, lambda x: reference(x, norm.weight, norm.bias))]  # fmt: skip
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, **TOL)
