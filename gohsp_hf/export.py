"""Hard pruning: slice a (masked) dense ViT/DeiT into a physically smaller `GOHSPViTForImageClassification`.

GOHSP stage 3 (paper: "the pruned weights ... are removed"): every kept group is copied, every pruned group
is dropped, and the softmax scale of the dense model is kept (head sizes shrink), so the exported model gives
the masked dense model's logits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from .configuration_gohsp_vit import GOHSPViTConfig
from .groups import GROUP_KINDS, KINDS, Layout, dense_size, flat_indices
from .model_utils import base_model_prefix, model_variant
from .modeling_gohsp_vit import GOHSPViTForImageClassification
from .structure import PrunedStructure

LAYER_NORMS = ("dense_statistics", "plain")

# Source config attributes that the pruned architecture keeps as they are.
_COPIED_CONFIG_KEYS = (
    "num_hidden_layers",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "image_size",
    "patch_size",
    "num_channels",
    "qkv_bias",
    "id2label",
    "label2id",
)


def pruned_config(
    model: nn.Module, structure: PrunedStructure, provenance: dict | None = None, layer_norm: str = "dense_statistics"
) -> GOHSPViTConfig:
    """The `GOHSPViTConfig` of `model` pruned to `structure` (see `export_pruned_model` for `layer_norm`)."""
    if layer_norm not in LAYER_NORMS:
        raise ValueError(f"layer_norm must be one of {LAYER_NORMS}, got {layer_norm!r}.")
    source = model.config
    sizes = structure.sizes()
    narrowed = structure.hidden_size < source.hidden_size
    return GOHSPViTConfig(
        variant=model_variant(model),
        num_attention_heads=[s["heads"] for s in sizes],
        qk_head_dim=[s["qk_dim"] for s in sizes],
        v_head_dim=[s["v_dim"] for s in sizes],
        intermediate_size=[s["mlp"] for s in sizes],
        original_head_dim=structure.dims.head_dim,
        gohsp_provenance={"source_model": source.name_or_path or source.model_type, **(provenance or {})},
        hidden_size=structure.hidden_size,
        layer_norm_hidden_size=source.hidden_size if narrowed and layer_norm == "dense_statistics" else None,
        **{key: getattr(source, key) for key in _COPIED_CONFIG_KEYS},
    )


@torch.no_grad()
def export_pruned_model(
    model: nn.Module, structure: PrunedStructure, provenance: dict | None = None, layer_norm: str = "dense_statistics"
) -> GOHSPViTForImageClassification:
    """Physically remove the pruned groups of a ViT/DeiT and return the smaller model.

    Args:
        model: a `ViTForImageClassification`, `DeiTForImageClassification` or
            `DeiTForImageClassificationWithTeacher` (masked or not: pruned groups are dropped either way).
        structure: what to keep in each block.
        provenance: facts to record in `config.gohsp_provenance` (method, target and measured sparsity...).
        layer_norm: when the structure narrows the residual stream, `"dense_statistics"` keeps the dense
            LayerNorm statistics (the export is exact), `"plain"` makes them ordinary LayerNorms over the kept
            channels (the function changes and fine-tuning brings it back).

    Returns:
        A `GOHSPViTForImageClassification` whose logits equal those of `apply_masks(model, structure)` (with
        `layer_norm="plain"` and a narrowed residual stream, only approximately).

    Example:

    ```python
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from gohsp_hf import PrunedStructure, export_pruned_model
    >>> dense = ViTForImageClassification(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    ...                                             intermediate_size=128, image_size=32, patch_size=8))
    >>> structure = PrunedStructure.from_model(dense)
    >>> structure.layers[0].heads = [1, 3]
    >>> export_pruned_model(dense, structure).config.num_attention_heads
    [2, 4]
    ```
    """
    structure.validate_for(model)
    config = pruned_config(model, structure, provenance, layer_norm)
    config._attn_implementation = model.config._attn_implementation
    pruned = GOHSPViTForImageClassification(config).to(dtype=next(model.parameters()).dtype)
    pruned.load_state_dict(slice_like_export(model, structure, model.state_dict()), strict=True)
    return pruned.train(model.training)


def slice_like_export(
    model: nn.Module, structure: PrunedStructure, tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Slice tensors shaped like `model`'s parameters (its state dict, or an optimizer's moments) as the export
    slices the parameters, and name them as the exported model does.

    Args:
        model: the dense (masked) ViT/DeiT that `structure` describes.
        structure: what to keep in each block.
        tensors: `{name in model.state_dict(): tensor of that entry's shape}`; names may be missing.

    Returns:
        `{name in the exported model's state dict: sliced copy}`, for the names given.
    """
    layout = Layout.from_model(model, hidden=structure.hidden is not None)
    sizes = {kind: dense_size(structure.dims, kind) for kind in (*KINDS, "hidden")}
    blocks = [{kind.name: getattr(layer, kind.field) for kind in GROUP_KINDS} for layer in structure.layers]
    hidden = {} if structure.hidden is None else {"hidden": structure.hidden}
    state = dict(tensors)
    for name in layout.parameters(model):
        if name not in state:
            continue
        block = layout.block_index(name)
        kept = ({} if block is None else blocks[block]) | hidden
        for axis, kinds in enumerate(layout.axes(name)):
            if kinds and all(kind in kept for kind in kinds):
                index = flat_indices(kinds, kept, sizes).to(state[name].device)
                state[name] = state[name].index_select(axis, index)
    return {exported_name(model, k): v.clone() for k, v in state.items()}


def exported_name(model: nn.Module, name: str) -> str:
    """The name of `model`'s state-dict entry `name` in the exported model (whose base model is `vit`)."""
    prefix = base_model_prefix(model) + "."
    return "vit." + name[len(prefix) :] if name.startswith(prefix) else name


def save_pruned_model(
    model: GOHSPViTForImageClassification,
    save_directory: str | os.PathLike,
    image_processor=None,
    structure: PrunedStructure | None = None,
    extra_files: dict[str, str | bytes] | None = None,
    **save_kwargs,
) -> Path:
    """Save a pruned model (safetensors, config, custom code) atomically, with its processor and structure.

    Everything is written into a temporary folder next to `save_directory` first. If `save_directory` holds
    only files (an earlier save), the new folder replaces it in one rename, so it always holds one complete
    save. If it holds sub-folders too (a run's `output_dir` with checkpoints), the files are moved in with
    `config.json` last: a folder with a `config.json` always holds a complete model.

    Args:
        model: the pruned model.
        save_directory: the folder to write; an existing one is replaced only once the new save is complete.
        image_processor: saved alongside, so `pipeline("image-classification", model=save_directory)` works.
        structure: saved as `gohsp_structure.json`, the indices of the dense groups that were kept.
        extra_files: more files to write in the same atomic save (file name -> text or bytes), e.g. `README.md`.
        save_kwargs: passed to `save_pretrained`.
    """
    target = Path(save_directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Re-register here too: a model loaded through local registration would otherwise save a stale auto_map.
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForImageClassification")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging, **save_kwargs)
        if image_processor is not None:
            image_processor.save_pretrained(staging)
        if structure is not None:
            structure.save(staging)
        for name, content in (extra_files or {}).items():
            path = staging / name
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        _replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _move_files_into(new: Path, target: Path) -> None:
    """Move the files of `new` into `target`, removing the old `config.json` first and adding the new one last."""
    (target / "config.json").unlink(missing_ok=True)
    for path in sorted(new.iterdir()):
        if path.name != "config.json":
            if (target / path.name).is_dir():
                shutil.rmtree(target / path.name)
            os.replace(path, target / path.name)
    os.replace(new / "config.json", target / "config.json")


def _replace_directory(new: Path, target: Path) -> None:
    """Move `new` to `target`; an old `target` is moved aside first and removed only after the swap."""
    if not target.exists():
        os.replace(new, target)
        return
    if any(p.is_dir() for p in target.iterdir()):
        _move_files_into(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous save back
        raise
    finally:
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
