"""gohsp_hf: GOHSP structured pruning for Hugging Face ViT/DeiT models.

Importing the package registers the pruned architecture with the Auto classes, so
`AutoModelForImageClassification.from_pretrained(pruned_dir)` works without `trust_remote_code`.
"""

import logging

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .admm import ADMMState
from .budget import BudgetSolver, UnreachableSparsityError
from .configuration_gohsp_vit import GOHSPViTConfig
from .counting import count_flops, count_parameters, model_cost
from .export import export_pruned_model, pruned_config, save_pruned_model
from .gohsp_config import GOHSPConfig
from .gohsp_trainer import GOHSPTrainer
from .head_ranking import HeadRanking, rank_heads
from .model_utils import SUPPORTED_MODELS, ModelDims, model_dims
from .modeling_gohsp_vit import GOHSPViTForImageClassification, GOHSPViTModel, GOHSPViTPreTrainedModel
from .structure import LayerStructure, PrunedStructure, apply_masks

__version__ = "0.1.0"

# Stage banners and the final summary are INFO messages of the "gohsp_hf" logger: shown by default, and
# silenced with logging.getLogger("gohsp_hf").setLevel(logging.WARNING).
_logger = logging.getLogger(__name__)
if not _logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[gohsp_hf] %(message)s"))
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False

AutoConfig.register(GOHSPViTConfig.model_type, GOHSPViTConfig)
AutoModel.register(GOHSPViTConfig, GOHSPViTModel)
AutoModelForImageClassification.register(GOHSPViTConfig, GOHSPViTForImageClassification)
# Saving then copies the two model files next to the weights and writes `auto_map`, so a folder loads
# with `trust_remote_code=True` on a machine without gohsp_hf.
GOHSPViTConfig.register_for_auto_class()
GOHSPViTModel.register_for_auto_class("AutoModel")
GOHSPViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "ADMMState",
    "BudgetSolver",
    "GOHSPConfig",
    "GOHSPTrainer",
    "HeadRanking",
    "rank_heads",
    "GOHSPViTConfig",
    "GOHSPViTForImageClassification",
    "GOHSPViTModel",
    "GOHSPViTPreTrainedModel",
    "LayerStructure",
    "ModelDims",
    "PrunedStructure",
    "SUPPORTED_MODELS",
    "UnreachableSparsityError",
    "apply_masks",
    "count_flops",
    "count_parameters",
    "export_pruned_model",
    "model_cost",
    "model_dims",
    "pruned_config",
    "save_pruned_model",
]
