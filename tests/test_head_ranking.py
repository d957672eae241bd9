"""Stage 1: head graphs, the Markov chain's stationary distribution, head selection."""

import pytest
import torch
from conftest import make_model

from gohsp_hf.head_ranking import head_graph_update, rank_heads, select_heads, stationary_distribution


def test_symmetric_graph_without_damping_gives_weighted_degree():
    w = torch.rand(6, 6, generator=torch.Generator().manual_seed(0)).double()
    w = w + w.T
    pi, residuals = stationary_distribution(w, damping=1.0, tol=1e-14)
    degree = (w * (1 - torch.eye(6, dtype=torch.float64))).sum(1)
    torch.testing.assert_close(pi, degree / degree.sum(), atol=1e-10, rtol=0)
    assert residuals[-1] < 1e-14


def test_power_iteration_matches_the_eigenvector_of_the_damped_chain():
    w = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)).double()  # asymmetric
    pi, _ = stationary_distribution(w, damping=0.85, tol=1e-14)
    p = w * (1 - torch.eye(5, dtype=torch.float64))
    p = 0.85 * p / p.sum(1, keepdim=True) + 0.15 / 5
    values, vectors = torch.linalg.eig(p.T)
    stationary = vectors[:, values.real.argmax()].real
    torch.testing.assert_close(pi, stationary / stationary.sum(), atol=1e-10, rtol=0)
    torch.testing.assert_close(pi @ p, pi, atol=1e-10, rtol=0)


def test_graph_edges():
    probs = torch.softmax(torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(2)), -1)
    cosine = head_graph_update(probs, "cosine")
    torch.testing.assert_close(cosine.diagonal(), torch.full((3,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(cosine, cosine.T)
    kl = head_graph_update(probs, "kl")
    torch.testing.assert_close(kl.diagonal(), torch.full((3,), 2.0, dtype=torch.float64))  # exp(-0) per image
    assert (kl > 0).all() and (kl <= 2).all() and not torch.allclose(kl, kl.T)


@pytest.mark.parametrize("similarity", ["cosine", "kl"])
def test_rank_heads_on_a_model(similarity):
    model = make_model("deit", num_attention_heads=4, hidden_size=64)
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ranking = rank_heads(
        model, [x[:5], {"pixel_values": x[5:]}], 0.25, num_samples=10, similarity=similarity, progress=False
    )
    assert ranking.scores.shape == (3, 4) and (ranking.scores >= 0).all()
    torch.testing.assert_close(ranking.scores.sum(1), torch.ones(3), atol=1e-6, rtol=0)
    assert ranking.mask.sum().item() == 12 - 3 and (ranking.mask.sum(1) >= 1).all()
    assert model.config._attn_implementation == "sdpa"  # restored after collecting maps with eager
    # keep_distinct drops the most central heads; keep_central the least central.
    for layer in range(3):
        dropped = (~ranking.mask[layer]).nonzero().item()
        assert ranking.scores[layer, dropped] == ranking.scores[layer].max()
    central = rank_heads(
        model, [x], 0.25, num_samples=10, similarity=similarity, direction="keep_central", progress=False
    )
    for layer in range(3):
        assert central.scores[layer, (~central.mask[layer]).nonzero().item()] == central.scores[layer].min()


def test_select_heads_scopes():
    scores = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]])
    per_block = select_heads(scores, 4, "per_block")
    assert per_block.sum(1).tolist() == [2, 2, 1]  # 1 each, the extra one where the next score is lowest
    global_mask = select_heads(scores, 4, "global")
    assert global_mask.sum().item() == 5 and (global_mask.sum(1) >= 1).all()
    assert not global_mask[2, 0] and not global_mask[2, 1] and global_mask[2, 2]
    with pytest.raises(ValueError, match="one per block stays"):
        select_heads(scores, 7)


def test_empty_calibration_data_is_an_error():
    with pytest.raises(ValueError, match="No calibration images"):
        rank_heads(make_model("vit"), [], 0.3, progress=False)
