"""A ViT / DeiT whose blocks have heterogeneous sizes, as left by GOHSP pruning.

This file is saved next to the weights of every pruned model, so it imports only ``torch``,
``transformers`` and its sibling configuration file. The parameter names follow transformers' ViT
(``vit.layers.{i}.attention.{q,k,v,o}_proj``, ``vit.layers.{i}.mlp.{fc1,fc2}``), with the per-block sizes
read from [`GOHSPViTConfig`].
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_gohsp_vit import GOHSPViTConfig


class GOHSPViTLayerNorm(nn.LayerNorm):
    """LayerNorm over the kept residual channels; with `config.layer_norm_hidden_size` set, its statistics are
    those of the dense model's LayerNorm over that many channels, the removed ones being zero."""

    def __init__(self, config: GOHSPViTConfig):
        super().__init__(config.hidden_size, eps=config.layer_norm_eps)
        self.statistics_size = config.layer_norm_hidden_size or config.hidden_size

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.statistics_size == self.normalized_shape[0]:
            return super().forward(hidden_states)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (hidden_states, self.weight, self.bias)):
            return self._differentiable(hidden_states)
        return self._fused(hidden_states)

    def _differentiable(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The dense statistics in plain ops, for training (native_layer_norm's mean and rstd carry no gradient)."""
        n, missing = self.statistics_size, self.statistics_size - hidden_states.shape[-1]
        mean = hidden_states.sum(-1, keepdim=True) / n
        # The removed channels are zeros: each adds mean^2 to the sum of squared deviations.
        variance = ((hidden_states - mean).pow(2).sum(-1, keepdim=True) + missing * mean.pow(2)) / n
        return (hidden_states - mean) * torch.rsqrt(variance + self.eps) * self.weight + self.bias

    def _fused(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The same values for inference, in fewer and fused ops."""
        # One fused LayerNorm over the kept channels, then a per-token correction to the dense statistics. The
        # removed channels are zeros, so with r = kept / dense: dense mean = r * mean and dense variance =
        # r * (var + mean^2) - (r * mean)^2; and with normalized = (x - mean) * rstd * w,
        # (x - dense_mean) * dense_rstd * w + b = normalized * (dense_rstd / rstd) + (1 - r) * mean * dense_rstd * w + b.
        # Few ops on (tokens, 1) tensors: at batch 1 their count is what costs.
        r = hidden_states.shape[-1] / self.statistics_size
        normalized, mean, rstd = torch.native_layer_norm(
            hidden_states, self.normalized_shape, self.weight, None, self.eps
        )
        mean, rstd = mean.float(), rstd.float()
        variance_eps = rstd.pow(-2).mul_(r).add_((1 - r) * self.eps)  # r * (var + eps) + (1 - r) * eps
        dense_rstd = torch.addcmul(variance_eps, mean, mean, value=r * (1 - r)).rsqrt()
        shift = torch.mul(mean, dense_rstd).mul_(1 - r).to(hidden_states.dtype)
        scale = (dense_rstd / rstd).to(hidden_states.dtype)
        return torch.addcmul(torch.addcmul(self.bias, shift, self.weight), normalized, scale)


class GOHSPViTEmbeddings(nn.Module):
    """CLS token (and the DeiT distillation token), patch embeddings and position embeddings."""

    def __init__(self, config: GOHSPViTConfig):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = (
            nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.num_special_tokens == 2 else None
        )
        self.patch_embeddings = GOHSPViTPatchEmbeddings(config)
        num_positions = self.patch_embeddings.num_patches + config.num_special_tokens
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch_size = pixel_values.shape[0]
        embeddings = self.patch_embeddings(pixel_values)  # (batch, patches, hidden)
        special = [self.cls_token.expand(batch_size, -1, -1)]
        if self.distillation_token is not None:
            special.append(self.distillation_token.expand(batch_size, -1, -1))
        embeddings = torch.cat([*special, embeddings], dim=1)  # (batch, tokens, hidden)
        return self.dropout(embeddings + self.position_embeddings)


class GOHSPViTPatchEmbeddings(nn.Module):
    def __init__(self, config: GOHSPViTConfig):
        super().__init__()
        image_size, patch_size = _pair(config.image_size), _pair(config.patch_size)
        self.image_size = image_size
        self.num_channels = config.num_channels
        self.num_patches = (image_size[0] // patch_size[0]) * (image_size[1] // patch_size[1])
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = pixel_values.shape
        if channels != self.num_channels or (height, width) != tuple(self.image_size):
            raise ValueError(
                f"Expected pixel_values of shape (batch, {self.num_channels}, {self.image_size[0]}, "
                f"{self.image_size[1]}), got {tuple(pixel_values.shape)}; resize the images with the model's "
                "image processor."
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (batch, patches, hidden)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention; returns the output as (batch, tokens, heads, v_dim) and the probabilities."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, tokens, tokens)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (batch, tokens, heads, v_dim)
    return output, probs


class GOHSPViTAttention(nn.Module):
    """Multi-head self-attention with this block's own head count, q/k size and v size."""

    def __init__(self, config: GOHSPViTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads[layer_idx]
        self.qk_head_dim = config.qk_head_dim[layer_idx]
        self.v_head_dim = config.v_head_dim[layer_idx]
        # The dense model's scale: pruning q/k dimensions must not change the softmax temperature.
        self.scaling = config.original_head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False  # HF attention functions default to causal when this is missing
        hidden, heads = config.hidden_size, self.num_heads
        self.q_proj = nn.Linear(hidden, heads * self.qk_head_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(hidden, heads * self.qk_head_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(hidden, heads * self.v_head_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(heads * self.v_head_dim, hidden)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        batch, tokens, _ = hidden_states.shape
        # (batch, heads, tokens, head_dim)
        query = self.q_proj(hidden_states).view(batch, tokens, self.num_heads, self.qk_head_dim).transpose(1, 2)
        key = self.k_proj(hidden_states).view(batch, tokens, self.num_heads, self.qk_head_dim).transpose(1, 2)
        value = self.v_proj(hidden_states).view(batch, tokens, self.num_heads, self.v_head_dim).transpose(1, 2)
        implementation = "eager" if output_attentions else self.config._attn_implementation
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        # Fused SDPA kernels want one head size for q, k and v; without it PyTorch falls back to its slow math
        # path. Zero columns change no dot product and only add zero outputs, which are cut off again.
        width = max(self.qk_head_dim, self.v_head_dim)
        pad = implementation != "eager" and self.qk_head_dim != self.v_head_dim and self.config.pad_head_dims
        if pad:
            query, key, value = (x if x.shape[-1] == width else nn.functional.pad(x, (0, width - x.shape[-1]))
                                 for x in (query, key, value))  # fmt: skip
        output, probs = attention_interface(
            self,
            query,
            key,
            value,
            None,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        if pad and width != self.v_head_dim:
            output = output[..., : self.v_head_dim]
        output = output.reshape(batch, tokens, self.num_heads * self.v_head_dim)
        return self.o_proj(output), probs


class GOHSPViTMLP(nn.Module):
    def __init__(self, config: GOHSPViTConfig, layer_idx: int):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size[layer_idx])
        self.fc2 = nn.Linear(config.intermediate_size[layer_idx], config.hidden_size)
        self.activation_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class GOHSPViTLayer(nn.Module):
    """A pre-norm transformer block, as in ViT."""

    def __init__(self, config: GOHSPViTConfig, layer_idx: int):
        super().__init__()
        self.layernorm_before = GOHSPViTLayerNorm(config)
        self.attention = GOHSPViTAttention(config, layer_idx)
        self.layernorm_after = GOHSPViTLayerNorm(config)
        self.mlp = GOHSPViTMLP(config, layer_idx)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        attention_output, probs = self.attention(self.layernorm_before(hidden_states), output_attentions)
        hidden_states = hidden_states + self.dropout(attention_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, probs


class GOHSPViTPreTrainedModel(PreTrainedModel):
    config_class = GOHSPViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["GOHSPViTEmbeddings", "GOHSPViTLayer"]
    _supports_sdpa = True
    # The forward takes no **kwargs and returns a mean loss: the Trainer must not rescale it.
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        try:
            return super().from_pretrained(*args, **kwargs)
        except RuntimeError as error:
            if "mismatched" not in str(error):
                raise
            raise ValueError(
                "The weights of this GOHSP-pruned model do not match the per-block sizes in its config.json "
                "(the config was edited, or the folder mixes two saves); restore the config.json that was saved "
                "with these weights, or export and save the pruned model again."
            ) from error

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GOHSPViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
            if module.distillation_token is not None:
                init.trunc_normal_(module.distillation_token, mean=0.0, std=self.config.initializer_range)


class GOHSPViTModel(GOHSPViTPreTrainedModel):
    """The pruned encoder: embeddings, heterogeneous blocks and the final layer norm (no pooler)."""

    def __init__(self, config: GOHSPViTConfig):
        super().__init__(config)
        self.embeddings = GOHSPViTEmbeddings(config)
        self.layers = nn.ModuleList([GOHSPViTLayer(config, i) for i in range(config.num_hidden_layers)])
        self.layernorm = GOHSPViTLayerNorm(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states = self.embeddings(pixel_values)  # (batch, tokens, hidden)
        all_hidden_states, all_attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            hidden_states, probs = layer(hidden_states, output_attentions)
            if output_attentions:
                all_attentions.append(probs)  # (batch, heads, tokens, tokens)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        output = BaseModelOutput(
            last_hidden_state=self.layernorm(hidden_states),
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()


@dataclass
class GOHSPViTImageClassifierOutput(ImageClassifierOutput):
    """`ImageClassifierOutput`, plus the two heads' own logits for the DeiT-with-teacher variant."""

    cls_logits: torch.FloatTensor | None = None
    distillation_logits: torch.FloatTensor | None = None


class GOHSPViTForImageClassification(GOHSPViTPreTrainedModel):
    """The pruned encoder with the source model's classification head(s).

    - `variant="vit"` / `"deit"`: one linear classifier on the CLS token.
    - `variant="deit_with_teacher"`: `cls_classifier` on the CLS token and `distillation_classifier` on the
      distillation token; the logits are their mean, as in `DeiTForImageClassificationWithTeacher`. With
      `labels`, the loss is the mean of both heads' cross-entropy, so the model can be fine-tuned.
    """

    def __init__(self, config: GOHSPViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = GOHSPViTModel(config)
        if config.variant == "deit_with_teacher":
            self.cls_classifier = nn.Linear(config.hidden_size, config.num_labels)
            self.distillation_classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> GOHSPViTImageClassifierOutput:
        outputs = self.vit(pixel_values, output_attentions, output_hidden_states, return_dict=True)
        sequence_output = outputs.last_hidden_state  # (batch, tokens, hidden)
        cls_logits = distillation_logits = None
        if self.config.variant == "deit_with_teacher":
            cls_logits = self.cls_classifier(sequence_output[:, 0])
            distillation_logits = self.distillation_classifier(sequence_output[:, 1])
            logits = (cls_logits + distillation_logits) / 2
        else:
            logits = self.classifier(sequence_output[:, 0])  # (batch, labels)
        loss = None
        if labels is not None:
            if cls_logits is not None:
                loss = (
                    _classification_loss(cls_logits, labels) + _classification_loss(distillation_logits, labels)
                ) / 2
            else:
                loss = _classification_loss(logits, labels)
        output = GOHSPViTImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
        )
        return output if return_dict is not False else output.to_tuple()


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Single-label cross-entropy (mean over the batch), the loss of ViTForImageClassification."""
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


__all__ = ["GOHSPViTForImageClassification", "GOHSPViTModel", "GOHSPViTPreTrainedModel"]
