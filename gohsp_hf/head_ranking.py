"""GOHSP stage 1: graph-based head ranking (docs/method.md, "Stage 1").

The heads of a block are the nodes of a graph whose edge weights say how alike their attention maps are on
calibration images. The stationary distribution of a Markov chain on that graph (PageRank-style damping,
power iteration) scores the heads; the least important ones are masked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .model_utils import block_modules, model_dims

SIMILARITIES = ("cosine", "kl")
DIRECTIONS = ("keep_distinct", "keep_central")
SCOPES = ("per_block", "global")


@dataclass
class HeadRanking:
    """Result of `rank_heads`.

    Attributes:
        scores: (layers, heads) stationary distribution pi of each block's chain; each row sums to 1.
        mask: (layers, heads) booleans, True for kept heads.
        graphs: (layers, heads, heads) edge weights W (mean over calibration images).
        iterations: power-iteration steps per block until convergence.
        residuals: per block, the L1 change of pi at every power-iteration step (its convergence curve).
    """

    scores: torch.Tensor
    mask: torch.Tensor
    graphs: torch.Tensor
    iterations: list[int] = field(default_factory=list)
    residuals: list[list[float]] = field(default_factory=list)


def stationary_distribution(
    weights: torch.Tensor, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 1000
) -> tuple[torch.Tensor, list[float]]:
    """Stationary distribution of the chain with transitions `damping * P + (1 - damping) / n`.

    P is `weights` (n, n, non-negative, diagonal ignored) normalised by rows. With `damping=1` and a symmetric
    `weights`, pi is proportional to the weighted degree.

    Returns:
        pi (n,), summing to 1, and the L1 change of pi at each power-iteration step.
    """
    n = weights.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64), []
    off_diagonal = 1 - torch.eye(n, dtype=torch.float64)
    w = weights.double().clamp_min(0) * off_diagonal
    rows = w.sum(1, keepdim=True)
    # A head with no edges jumps uniformly to the others (the usual treatment of a dangling node).
    transition = torch.where(rows > 0, w / rows.clamp_min(1e-300), off_diagonal / (n - 1))
    pi = torch.full((n,), 1 / n, dtype=torch.float64)
    residuals = []
    for _ in range(max_iter):
        new = damping * (pi @ transition) + (1 - damping) / n
        new = new / new.sum()
        residuals.append((new - pi).abs().sum().item())
        pi = new
        if residuals[-1] < tol:
            break
    return pi, residuals


def head_graph_update(probs: torch.Tensor, similarity: str) -> torch.Tensor:
    """Sum over a batch of the edge weights between the heads of one block.

    Args:
        probs: (batch, heads, tokens, tokens) softmax attention maps.
        similarity: `"cosine"` (of the flattened maps; symmetric) or `"kl"` (affinity `exp(-KL(A_i || A_j))`,
            KL averaged over query tokens; asymmetric).

    Returns:
        (heads, heads) summed over the batch.
    """
    probs = probs.double()
    if similarity == "cosine":
        flat = nn.functional.normalize(probs.flatten(2), dim=-1)  # (batch, heads, tokens * tokens)
        return (flat @ flat.transpose(1, 2)).sum(0)
    log_p = probs.clamp_min(1e-12).log()
    # KL(A_i || A_j) per query row: sum_k p_i log p_i - p_i log p_j, averaged over rows.  (batch, heads, heads)
    entropy_term = (probs * log_p).sum(-1).mean(-1)  # (batch, heads)
    cross = torch.einsum("bhqk,bgqk->bhgq", probs, log_p).mean(-1)  # (batch, heads, heads)
    kl = entropy_term[:, :, None] - cross
    return torch.exp(-kl.clamp_min(0)).sum(0)


@torch.no_grad()
def head_graphs(
    model: nn.Module, batches: Iterable, num_samples: int = 512, similarity: str = "cosine", progress: bool = True
) -> torch.Tensor:
    """Mean edge weights (layers, heads, heads) over `num_samples` calibration images.

    Args:
        model: a supported ViT/DeiT.
        batches: an iterable of `pixel_values` tensors or of dicts holding `"pixel_values"`.
        num_samples: images to use (fewer if `batches` runs out).
        similarity: see `head_graph_update`.
        progress: show a progress bar.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
    dims = model_dims(model)
    block_modules(model)  # raises for unsupported models
    graphs = torch.zeros(dims.num_layers, dims.num_heads, dims.num_heads, dtype=torch.float64)
    seen, was_training = 0, model.training
    implementation = model.config._attn_implementation
    model.eval()
    model.set_attn_implementation("eager")  # SDPA does not return attention maps
    device = next(model.parameters()).device
    bar = tqdm(total=num_samples, desc="GOHSP head ranking", unit="img", disable=not progress)
    try:
        for batch in batches:
            pixel_values = batch["pixel_values"] if isinstance(batch, dict) else batch
            pixel_values = pixel_values[: num_samples - seen].to(device)
            attentions = model(pixel_values=pixel_values, output_attentions=True).attentions
            for layer, probs in enumerate(attentions):
                graphs[layer] += head_graph_update(probs, similarity).cpu()
            seen += pixel_values.shape[0]
            bar.update(pixel_values.shape[0])
            if seen >= num_samples:
                break
    finally:
        bar.close()
        model.set_attn_implementation(implementation)
        model.train(was_training)
    if seen == 0:
        raise ValueError("No calibration images: the data passed to head ranking is empty.")
    return graphs / seen


def select_heads(scores: torch.Tensor, num_pruned: int, scope: str = "per_block") -> torch.Tensor:
    """Mask (layers, heads) that drops the `num_pruned` lowest-scoring heads, keeping one per block at least.

    `per_block` drops `num_pruned // layers` heads in every block (the remainder goes to the first blocks by
    lowest score); `global` compares `scores * heads` (so a uniform block scores 1 everywhere) across blocks.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    layers, heads = scores.shape
    if not 0 <= num_pruned <= layers * (heads - 1):
        raise ValueError(
            f"Can prune between 0 and {layers * (heads - 1)} heads (one per block stays), got {num_pruned}."
        )
    mask = torch.ones(layers, heads, dtype=torch.bool)
    order = torch.argsort(scores.double(), dim=1, stable=True)  # lowest first
    if scope == "per_block":
        per_block = [num_pruned // layers] * layers
        extra = torch.argsort(scores.double().gather(1, order[:, per_block[0] : per_block[0] + 1]).flatten())
        for layer in extra[: num_pruned % layers].tolist():
            per_block[layer] += 1
        for layer, n in enumerate(per_block):
            mask[layer, order[layer, :n]] = False
        return mask
    normalised = scores.double() * heads
    for flat in torch.argsort(normalised.flatten(), stable=True).tolist():
        if num_pruned == 0:
            break
        layer, head = divmod(flat, heads)
        if mask[layer].sum() > 1:
            mask[layer, head] = False
            num_pruned -= 1
    return mask


def rank_heads(
    model: nn.Module,
    batches: Iterable,
    head_sparsity: float,
    num_samples: int = 512,
    similarity: str = "cosine",
    damping: float = 0.85,
    direction: str = "keep_distinct",
    scope: str = "per_block",
    progress: bool = True,
) -> HeadRanking:
    """Rank the heads of every block by the stationary distribution of a Markov chain on their graph.

    Args:
        model: a supported ViT/DeiT.
        batches: calibration `pixel_values` (tensors or dicts).
        head_sparsity: fraction of all heads to mask.
        num_samples: calibration images.
        similarity: edge measure, `"cosine"` or `"kl"`.
        damping: the chain's damping factor (PageRank's alpha).
        direction: `"keep_central"` keeps the heads with the highest pi (the paper's reading: central means
            important); `"keep_distinct"` keeps the lowest pi, i.e. prunes the heads most like the others.
        scope: `"per_block"` or `"global"` (see `select_heads`).
        progress: show a progress bar over the calibration images.

    Returns:
        A `HeadRanking` with pi per block, the mask, the graphs and the convergence of power iteration.

    Example:

    ```python
    >>> ranking = rank_heads(model, [batch["pixel_values"]], head_sparsity=0.25, num_samples=64)
    >>> ranking.scores.sum(1)  # one per block
    ```
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    if not 0 <= head_sparsity < 1:
        raise ValueError(f"head_sparsity must be in [0, 1), got {head_sparsity}.")
    graphs = head_graphs(model, batches, num_samples, similarity, progress)
    results = [stationary_distribution(graph, damping) for graph in graphs]
    scores = torch.stack([pi for pi, _ in results]).float()  # (layers, heads)
    layers, heads = scores.shape
    num_pruned = min(round(head_sparsity * layers * heads), layers * (heads - 1))
    importance = scores if direction == "keep_central" else -scores
    mask = select_heads(importance, num_pruned, scope)
    return HeadRanking(
        scores=scores,
        mask=mask,
        graphs=graphs.float(),
        iterations=[len(r) for _, r in results],
        residuals=[r for _, r in results],
    )
