"""What survives pruning in each block, and the masks that zero everything else in a dense model.

A `PrunedStructure` lists, for every block of a ViT/DeiT, the kept heads, the kept query/key dimensions and
value dimensions (shared by all kept heads of the block, `groups` describes them), and the kept
MLP neurons. It converts to and from masks and JSON; `apply_masks` turns a dense model into the "masked
model", an ordinary ViT/DeiT whose pruned groups are zero.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .groups import GROUP_KINDS, Layout, block_tensors, dense_size, tensor_mask
from .model_utils import ModelDims, model_dims

STRUCTURE_FILE = "gohsp_structure.json"


@dataclass
class LayerStructure:
    """Kept groups of one block, as sorted indices into the dense block.

    Args:
        heads: kept heads, in `range(num_heads)`.
        qk_dims: kept query/key dimensions of every kept head, in `range(head_dim)`.
        v_dims: kept value dimensions of every kept head, in `range(head_dim)`.
        mlp: kept MLP neurons, in `range(intermediate_size)`.
    """

    heads: list[int]
    qk_dims: list[int]
    v_dims: list[int]
    mlp: list[int]

    def __post_init__(self):
        for name in ("heads", "qk_dims", "v_dims", "mlp"):
            setattr(self, name, sorted(int(i) for i in getattr(self, name)))

    @property
    def sizes(self) -> dict[str, int]:
        return {"heads": len(self.heads), "qk_dim": len(self.qk_dims), "v_dim": len(self.v_dims), "mlp": len(self.mlp)}


@dataclass
class PrunedStructure:
    """The per-block structure of a pruned ViT/DeiT, with the dense sizes it indexes into.

    Example:

    ```python
    >>> from gohsp_hf import PrunedStructure
    >>> from gohsp_hf.model_utils import ModelDims
    >>> dims = ModelDims(hidden_size=64, num_layers=2, num_heads=4, head_dim=16, intermediate_size=128)
    >>> s = PrunedStructure.dense(dims)
    >>> s.layers[0].heads = [0, 2]
    >>> PrunedStructure.from_json(s.to_json()).layers[0].heads
    [0, 2]
    ```
    """

    dims: ModelDims
    layers: list[LayerStructure] = field(default_factory=list)
    hidden: list[int] | None = None  # kept residual-stream channels; None: the residual width is not pruned

    def __post_init__(self):
        if self.hidden is not None:
            self.hidden = sorted(int(i) for i in self.hidden)

    @property
    def hidden_size(self) -> int:
        """The residual width the structure keeps."""
        return self.dims.hidden_size if self.hidden is None else len(self.hidden)

    @classmethod
    def dense(cls, dims: ModelDims, hidden: bool = False) -> PrunedStructure:
        """The structure that keeps everything (with `hidden`, listing every residual channel as kept)."""
        full = LayerStructure(*(list(range(dense_size(dims, kind.name))) for kind in GROUP_KINDS))
        layers = [LayerStructure(**asdict(full)) for _ in range(dims.num_layers)]
        return cls(dims, layers, list(range(dims.hidden_size)) if hidden else None)

    @classmethod
    def from_model(cls, model: nn.Module) -> PrunedStructure:
        return cls.dense(model_dims(model))

    # -- masks ----------------------------------------------------------------------------------
    def to_masks(self) -> list[dict[str, torch.Tensor]]:
        """One dict of boolean group masks per block, by kind: `head` (H,), `qk` (d_h,), `v` (d_h,), `mlp` (I,)."""
        return [
            {
                kind.name: _index_mask(getattr(layer, kind.field), dense_size(self.dims, kind.name))
                for kind in GROUP_KINDS
            }
            for layer in self.layers
        ]

    @classmethod
    def from_masks(cls, dims: ModelDims, masks: list[dict[str, torch.Tensor]]) -> PrunedStructure:
        """Inverse of `to_masks`; the structure is validated against `dims`."""
        layers = [
            LayerStructure(*(torch.as_tensor(m[kind.name]).nonzero().flatten().tolist() for kind in GROUP_KINDS))
            for m in masks
        ]
        structure = cls(dims, layers)
        structure.validate()
        return structure

    def hidden_mask(self) -> torch.Tensor | None:
        """(hidden_size,) booleans of the kept residual channels, or None when the residual width is not pruned."""
        return None if self.hidden is None else _index_mask(self.hidden, self.dims.hidden_size)

    def parameter_masks(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Masks (1 = kept) that broadcast against every prunable tensor of `model`, on its device and dtype."""
        self.validate_for(model)
        layout = Layout.from_model(model, hidden=self.hidden is not None)
        params, masks = layout.parameters(model), {}
        groups, hidden = self.to_masks(), self.hidden_mask()
        for name, param in params.items():
            block = layout.block_index(name)
            kinds = ({} if block is None else groups[block]) | ({} if hidden is None else {"hidden": hidden})
            masks[name] = tensor_mask(layout.axes(name), kinds).to(device=param.device, dtype=param.dtype)
        return masks

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise a `ValueError` unless every block keeps at least one of each group and indices are in range."""
        d = self.dims
        if len(self.layers) != d.num_layers:
            raise ValueError(f"The structure has {len(self.layers)} blocks but the model has {d.num_layers}.")
        limits = {kind.field: dense_size(d, kind.name) for kind in GROUP_KINDS}
        for i, layer in enumerate(self.layers):
            for name, limit in limits.items():
                _check_indices(f"Block {i}", name, getattr(layer, name), limit)
        if self.hidden is not None:
            _check_indices("The model", "hidden", self.hidden, d.hidden_size)

    def validate_for(self, model: nn.Module) -> None:
        """`validate`, plus a check that the structure was made for this model's sizes."""
        dims = model_dims(model)
        if dims != self.dims:
            raise ValueError(f"The structure was made for a model with {self.dims}, but this model has {dims}.")
        self.validate()

    # -- summaries ------------------------------------------------------------------------------
    def sizes(self) -> list[dict[str, int]]:
        """Per-block kept counts: heads, qk_dim, v_dim and mlp."""
        return [layer.sizes for layer in self.layers]

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {"dims": asdict(self.dims), "layers": [asdict(layer) for layer in self.layers]}
        return data if self.hidden is None else data | {"hidden": self.hidden}

    @classmethod
    def from_dict(cls, data: dict) -> PrunedStructure:
        layers = [LayerStructure(**layer) for layer in data["layers"]]
        structure = cls(ModelDims(**data["dims"]), layers, data.get("hidden"))
        structure.validate()
        return structure

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> PrunedStructure:
        return cls.from_dict(json.loads(text))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / STRUCTURE_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PrunedStructure:
        return cls.from_json((Path(directory) / STRUCTURE_FILE).read_text())


# The tensors of a block that pruning heads, q/k and v dimensions and MLP neurons touches, in table order.
PRUNABLE_TENSORS = tuple(block_tensors())


def block_parameter_masks(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Broadcastable element masks of one block's tensors, from its group masks (`groups.BLOCK_TENSORS`); with a
    `hidden` mask in `group`, the block's residual-stream tensors too.

    Rows of q/k/v are laid out head by head (`h * head_dim + j`), so a row survives when its head and its
    dimension both survive. o_proj's input columns follow v; fc1's rows and fc2's columns follow the neurons.
    """
    return {name: tensor_mask(axes, group) for name, axes in block_tensors(kinds=tuple(group)).items()}


@torch.no_grad()
def apply_masks(model: nn.Module, structure: PrunedStructure) -> nn.Module:
    """Zero every pruned group of a dense ViT/DeiT in place and return it (the "masked model")."""
    params = dict(model.named_parameters())
    for name, mask in structure.parameter_masks(model).items():
        params[name].mul_(mask)
    return model


def _check_indices(where: str, name: str, indices: list[int], limit: int) -> None:
    if not indices:
        raise ValueError(f"{where} keeps no {name}; every block must keep at least one.")
    if min(indices) < 0 or max(indices) >= limit or len(set(indices)) != len(indices):
        raise ValueError(f"{where}: {name} indices must be distinct and in range(0, {limit}), got {indices}.")


def _index_mask(indices: list[int], size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[list(indices)] = True
    return mask
