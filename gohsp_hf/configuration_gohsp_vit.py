"""Configuration of a GOHSP-pruned ViT / DeiT.

This file is saved next to the weights of every pruned model, so it may import only ``transformers``
(never ``gohsp_hf``). It describes a ViT whose blocks each have their own number of heads, their own
query/key and value head sizes, and their own MLP width.
"""

from transformers import PretrainedConfig

VARIANTS = ("vit", "deit", "deit_with_teacher")


class GOHSPViTConfig(PretrainedConfig):
    r"""Configuration for [`GOHSPViTModel`] and [`GOHSPViTForImageClassification`].

    The embeddings, the layer norms and the classifier are those of the source ViT/DeiT, narrowed to the kept
    residual channels when the residual width was pruned; every block `l` has its own attention and MLP sizes.

    Args:
        variant (`str`, *optional*, defaults to `"vit"`):
            `"vit"` (CLS token only), `"deit"` (CLS + distillation token, classifier on CLS) or
            `"deit_with_teacher"` (CLS + distillation token, two classifiers whose logits are averaged).
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the residual stream (the kept channels, when it was pruned).
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of transformer blocks.
        num_attention_heads (`list[int]`, *optional*):
            Heads kept in each block (at least one).
        qk_head_dim (`list[int]`, *optional*):
            Query/key size of every head of each block.
        v_head_dim (`list[int]`, *optional*):
            Value size of every head of each block.
        intermediate_size (`list[int]`, *optional*):
            MLP width of each block.
        original_head_dim (`int`, *optional*, defaults to 64):
            Head size of the dense source model. The softmax scale stays `original_head_dim ** -0.5`, so the
            pruned model computes exactly what the masked dense model computed.
        layer_norm_hidden_size (`int`, *optional*):
            When set, every LayerNorm computes its mean and variance as if over this many channels, the missing
            ones being zero: a model whose residual width was pruned then computes exactly what the masked dense
            model computed. Unset (the default), LayerNorms are the usual ones over `hidden_size` channels.
        pad_head_dims (`bool`, *optional*, defaults to `True`):
            In a block whose q/k and v head sizes differ, pad the narrower ones with zeros (at run time, no extra
            weights) before a fused attention kernel (`sdpa`), which needs one head size; the output is exact.
        gohsp_provenance (`dict`, *optional*):
            Where the model came from: source model, method, target and measured sparsity, and so on.
        Other arguments are those of [`ViTConfig`].

    Example:

    ```python
    >>> from gohsp_hf import GOHSPViTConfig
    >>> config = GOHSPViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=[2, 1],
    ...                         qk_head_dim=[16, 8], v_head_dim=[16, 12], intermediate_size=[100, 37],
    ...                         original_head_dim=16, image_size=32, patch_size=4)
    >>> config.num_attention_heads
    [2, 1]
    ```
    """

    model_type = "gohsp_vit"

    def __init__(
        self,
        variant: str = "vit",
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: list[int] | None = None,
        qk_head_dim: list[int] | None = None,
        v_head_dim: list[int] | None = None,
        intermediate_size: list[int] | None = None,
        original_head_dim: int = 64,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        image_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        qkv_bias: bool = True,
        layer_norm_hidden_size: int | None = None,
        pad_head_dims: bool = True,
        gohsp_provenance: dict | None = None,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
        self.variant = variant
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        dense_heads = max(hidden_size // original_head_dim, 1)
        self.num_attention_heads = _per_layer(num_attention_heads, dense_heads, num_hidden_layers)
        self.qk_head_dim = _per_layer(qk_head_dim, original_head_dim, num_hidden_layers)
        self.v_head_dim = _per_layer(v_head_dim, original_head_dim, num_hidden_layers)
        self.intermediate_size = _per_layer(intermediate_size, 4 * hidden_size, num_hidden_layers)
        self.original_head_dim = original_head_dim
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.layer_norm_hidden_size = layer_norm_hidden_size
        self.pad_head_dims = pad_head_dims
        self.gohsp_provenance = dict(gohsp_provenance or {})
        super().__init__(**kwargs)
        self._check_sizes()

    @property
    def num_special_tokens(self) -> int:
        """Tokens before the patches: CLS, plus the distillation token for DeiT."""
        return 1 if self.variant == "vit" else 2

    def _check_sizes(self) -> None:
        for name in ("num_attention_heads", "qk_head_dim", "v_head_dim", "intermediate_size"):
            sizes = getattr(self, name)
            if len(sizes) != self.num_hidden_layers:
                raise ValueError(
                    f"{name} has {len(sizes)} entries but num_hidden_layers is {self.num_hidden_layers}; "
                    "give one entry per block."
                )
            if any(int(s) < 1 for s in sizes):
                raise ValueError(f"Every block needs {name} >= 1, got {sizes}.")


def _per_layer(values, default: int, num_layers: int) -> list[int]:
    """A per-block list of ints; `None` means the dense default in every block."""
    if values is None:
        return [int(default)] * num_layers
    if isinstance(values, int):
        return [values] * num_layers
    return [int(v) for v in values]


__all__ = ["GOHSPViTConfig"]
