"""Accuracy at equal size on Fashion-MNIST: GOHSP against the paper's GOHSP, SOMP, SGMP, random and Torch-Pruning,
on two shapes and two budgets, with distillation as a column, and the ablations behind gohsp's defaults.

    apt-get install -y dataset-fashion-mnist
    pip install torch-pruning==1.6.1                # benchmark-only dependency (in the `dev` extra)
    python benchmarks/accuracy.py                   # every pass -> results/accuracy/ (hours on 2 CPU cores)
    python benchmarks/accuracy.py --passes main     # one pass; --runs 'gohsp-*' picks runs by name
    python benchmarks/accuracy.py --quick           # a subset with few epochs -> results/accuracy_quick/
    bash benchmarks/accuracy_gpu.sh RESULTS_DIR SOURCE_DIR SECONDS PASS RUN...  # runs side by side on a GPU
    python benchmarks/accuracy_tables.py            # the README tables, from the JSON
    python benchmarks/plots.py                      # the plots, from the JSON

Passes (each a `Settings`):
- `main`: ViT 128x6, 4 heads, MLP 256 (`shape` "128x6-mlp256"), 3 extra epochs: every method at 40/60/80%, a
  second seed for gohsp and Torch-Pruning at 60/80%, distillation (seed 0) and weight averaging of the fine-tuning
  (`+ema`, both seeds) for both at 60/80%, and the ablations.
- `long`: the same model with 10 extra epochs, gohsp and Torch-Pruning at 80%, 3 seeds, distillation for both, and
  the ablations that decide the structure and the pruning stage.
- `mid`: the main shape with 6 extra epochs (2 in the pruning stage), gohsp with either layer norm and
  Torch-Pruning at 60/80%, 4 seeds: where the choice of layer norm flips between the two budgets; MLP floors
  (`min_mlp_width`) and narrower residual widths (`hidden=0.5`, `hidden=0.6`); and gohsp's allocation reached as
  Torch-Pruning reaches its own (at once, plain layer norms), seed 0.
- `mid45`: the main shape with 4.5 extra epochs (1.5 in the pruning stage), gohsp with either layer norm and
  Torch-Pruning at 80%, 2 seeds: half-way between the budgets where each layer norm won.
- `high`, `high-mid`: the main and mid passes at 90% removed (`high-mid` at 85% too), gohsp and Torch-Pruning,
  4 seeds each (and on `high-mid` gohsp with either layer norm; `masked` is the default up to 85%): beyond the
  goals' budgets.
- `mlp4`: a second shape, ViT 96x6, 4 heads, MLP 384 (MLP ratio 4), 3 extra epochs, gohsp and Torch-Pruning at
  60/80%, 4 seeds, and the ablations that decide the pruning stage (pruning at once, a shorter stage).
- `mlp4-high`: the second shape at 90% removed (3 extra epochs), gohsp and Torch-Pruning, 4 seeds.
- `mlp4-mid`: the second shape with the mid pass's 6 extra epochs, gohsp with either layer norm and Torch-Pruning at
  60/80%, 4 seeds, an MLP floor and narrower residual widths.
- `mlp4-long`: the second shape with the long pass's 10 extra epochs (3 + 7), gohsp and Torch-Pruning at 60/80%,
  4 seeds, and ablations (`MLP4_LONG_ABLATIONS`, every seed): a wider residual stream, the dense statistics, a
  per-block floor; then both tools distilled from the CNN teacher (`+kd_cnn`, 4 seeds), and gohsp's pruning stage
  distilled from it too (seed 0).
- `small`: a third, smaller shape, ViT 64x6, 4 heads, MLP 256 (`shape` "64x6-mlp256"; its dense model trains 10
  epochs), 3 extra epochs, gohsp and Torch-Pruning at 60/80%, 4 seeds, distillation for both (4 seeds) from the
  dense model (`+kd`) and from a stronger teacher, a CNN trained 6 epochs (`+kd_cnn`, 4 seeds), and ablations:
  60-80% removed leaves it 60-120 thousand parameters, about what 85-90% leaves the main shape.
  `small-long`: that shape at 60/80% with the long pass's 10 extra epochs (3 + 7), 3 seeds, distillation from the
  dense model (3 seeds) and ablations (`SMALL_LONG_ABLATIONS`, every seed).

1. Each shape's dense ViT is trained from scratch on the full training set until its test accuracy stops moving
   (the learning curve is in its result file) and cached in `benchmarks/.cache/` (a fresh clone retrains it).
2. Every pruning run starts from that model and gets the same extra epochs: gohsp spends `admm_epochs` in its
   pruning stage (gradual masks by default, ADMM if asked), gohsp_paper in ADMM, SGMP in its gradual
   schedule, and SOMP, random,
   Torch-Pruning and the dense control fine-tune for all of them. Same learning rate, batch, label smoothing and
   warm-up everywhere; gohsp runs with its library defaults.
3. Each run writes `<results_dir>/<run>.json` as soon as it ends; a run whose file exists is skipped, so a pass can
   be finished over several sittings.

Run names: `[<pass>-]dense`, `[<pass>-]control`, `[<pass>-]<method>-s<percent>-seed<seed>`, and
`[<pass>-]ablation-<knob>=<value>-s<percent>-seed<seed>`; the main pass has no prefix.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from speed import machine
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification
from transformers.modeling_outputs import ImageClassifierOutput

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "tests")]
from helpers import accuracy  # noqa: E402
from prepare_fashion_mnist import SOURCE, read_idx  # noqa: E402

from gohsp_hf import GOHSPConfig, GOHSPTrainer, UnreachableSparsityError, count_parameters, model_cost  # noqa: E402
from gohsp_hf.losses import distillation_loss  # noqa: E402

USE_CPU = True  # `--gpu`: the Trainers train on the GPU (Torch-Pruning's pruning step stays on the CPU)
ALL_METHODS = ("gohsp", "gohsp_paper", "somp", "sgmp", "random", "torch_pruning")
KD = dict(distillation_alpha=0.5, distillation_temperature=2.0)  # the distillation column, for both tools
EMA_DECAY = 0.998  # the weight-averaging column, for both tools: about the last 500 fine-tuning steps
# Torch-Pruning's recipe inside GOHSP: its widths at 80% on the main shape, pruned at once, on one-shot Taylor scores
TP_RECIPE = "allocation=uniform+round_to=2+hidden=0.5625+soft_pruning=none+importance=taylor+importance_steps=1"
TP_RECIPE_OVERRIDES = dict(allocation="uniform", round_to=2, hidden_sparsity=0.5625, soft_pruning="none",
                           importance="taylor", importance_steps=1)  # fmt: skip
# One knob of gohsp changed at a time; a variant equal to the library default is the main run itself.
ABLATIONS = {
    "importance=norm": dict(importance="norm"),
    "importance=taylor": dict(importance="taylor"),
    "importance=fisher": dict(importance="fisher"),
    "importance_steps=1": dict(importance_steps=1),
    # the same 512 calibration images in 64 batches of 8: Fisher sums 64 squared changes instead of 8
    "importance_batch_size=8": dict(importance_batch_size=8),
    "importance_samples=2048": dict(importance_samples=2048),  # 32 batches of 64
    "heads=half_of_target": dict(head_sparsity="half"),
    "head_ranking=importance": dict(head_ranking="importance"),
    "head_ranking=graph": dict(head_ranking="graph"),
    "soft_pruning=admm": dict(soft_pruning="admm"),
    "soft_pruning=gradual_admm": dict(soft_pruning="gradual_admm"),
    "soft_pruning=gradual": dict(soft_pruning="gradual"),
    "soft_pruning=none": dict(soft_pruning="none"),
    # how many allocations the gradual stage (or ADMM) makes on its way to the target (default 20)
    "admm_updates=10": dict(admm_updates=10),
    "admm_updates=50": dict(admm_updates=50),
    # the pass's extra epochs split differently ("rest": fine-tuning gets what the pruning stage leaves)
    "pruning_epochs=0.5": dict(admm_epochs=0.5, finetune_epochs="rest"),
    "pruning_epochs=1": dict(admm_epochs=1.0, finetune_epochs="rest"),
    "pruning_epochs=2": dict(admm_epochs=2.0, finetune_epochs="rest"),
    "pruning_epochs=5": dict(admm_epochs=5.0, finetune_epochs="rest"),
    "block_floor=0.15": dict(block_floor=0.15),  # less heterogeneous: every block keeps 15% of its parameters
    "block_floor=0.18": dict(block_floor=0.18),  # near-uniform at 80% on the main shape (Torch-Pruning's blocks: 19%)
    "block_floor=0.9_of_uniform": dict(block_floor=0.9, block_floor_of="uniform"),  # 0.18 at 80%, 0.36 at 60%
    "allocation=uniform": dict(allocation="uniform"),  # every block the same fraction of each kind, all heads kept
    # Torch-Pruning's structure at 80% on the main shape (56 residual channels, q/k and v 14 per head, MLP 113-116):
    # what GOHSP's scores and pruning stage make of the same widths
    "allocation=uniform+round_to=2+hidden=0.5625": dict(allocation="uniform", round_to=2, hidden_sparsity=0.5625),
    # the same widths pruned at once, as Torch-Pruning does (with GOHSP's scores and rescoring steps)
    "allocation=uniform+round_to=2+hidden=0.5625+soft_pruning=none": dict(
        allocation="uniform", round_to=2, hidden_sparsity=0.5625, soft_pruning="none"
    ),
    TP_RECIPE: TP_RECIPE_OVERRIDES,
    # ... with layer norms over the kept channels, as Torch-Pruning's are
    TP_RECIPE + "+layer_norm=plain": dict(TP_RECIPE_OVERRIDES, hidden_layer_norm="plain"),
    "normalize_block_scores": dict(normalize_block_scores=True),  # blocks compared by scores relative to their mean
    "lr_per_stage": dict(lr_scheduler_across_stages=False),  # a warm-up and decay per stage, not one over both
    "hidden=off": dict(prune_hidden_size=False),
    "hidden=0.25": dict(prune_hidden_size=True, hidden_sparsity=0.25),
    "hidden=0.5": dict(prune_hidden_size=True, hidden_sparsity=0.5),
    "hidden=0.6": dict(prune_hidden_size=True, hidden_sparsity=0.6),  # at 80% on the main shape: Torch-Pruning's 56
    "hidden=0.7": dict(prune_hidden_size=True, hidden_sparsity=0.7),  # 40 of 128: Torch-Pruning's width at 90%
    "layer_norm=dense_statistics": dict(hidden_layer_norm="dense_statistics"),  # the default below 6 epochs
    "layer_norm=plain": dict(hidden_layer_norm="plain"),
    # Torch-Pruning's way to the structure (at once, plain layer norms) with gohsp's allocation
    "soft_pruning=none+layer_norm=plain": dict(soft_pruning="none", hidden_layer_norm="plain"),
    "layer_norm=masked": dict(hidden_layer_norm="masked"),  # plain layer norms from the pruning stage on
    # the small pass's two best 60% ablations (+0.08 each over four seeds) together: do they add up?
    "block_floor=0.9_of_uniform+layer_norm=masked": dict(
        block_floor=0.9, block_floor_of="uniform", hidden_layer_norm="masked"
    ),
    "layer_norm=gradual": dict(hidden_layer_norm="gradual"),  # ... reached step by step over the stage
    "layer_norm=rescaled": dict(hidden_layer_norm="rescaled"),  # ... at once, their weights keeping the output size
    "round_to=1": dict(round_to=1),
    # An MLP floor in every block: at 60-80% on the main shape gohsp keeps 16-72 neurons (of 256) in blocks 2-6,
    # where Torch-Pruning keeps 113-161 in every block. 64 at 60% and 32 at 80% are about 0.6 of the uniform share
    # ((1 - target) of the width), 96 is that on the second shape (MLP 384) at 60%, 112 about Torch-Pruning's
    # width at 80% on the main shape.
    "min_mlp_width=32": dict(min_mlp_width=32),
    "min_mlp_width=64": dict(min_mlp_width=64),
    "min_mlp_width=96": dict(min_mlp_width=96),
    "min_mlp_width=112": dict(min_mlp_width=112),
    # at 60% on the main shape each gained 0.1-0.2 alone: half the residual width (64 channels, not 88) with the floor
    "hidden=0.5+min_mlp_width=64": dict(prune_hidden_size=True, hidden_sparsity=0.5, min_mlp_width=64),
    # distillation from the dense model in the pruning stage too, not only in fine-tuning (compare with gohsp+kd):
    # Torch-Pruning+KD distils all its epochs, gohsp+kd only those after the hard prune
    "kd+distillation_stages=all": dict(KD, distillation_stages="all"),
    # ... from the CNN teacher (compare with gohsp+kd_cnn, which distils fine-tuning only)
    "kd_cnn+distillation_stages=all": dict(KD, distillation_stages="all", teacher="cnn"),
    # fine-tuning continues the pruning stage's Adam moments (sliced with the weights) instead of a fresh optimizer,
    # which moves every weight by about the full rate in its first steps, with no warm-up where the schedule is
    "carry_optimizer_state": dict(carry_optimizer_state=True),
    # the small-long pass's two knobs that gained at 80% (a wider residual stream, the dense statistics) together
    "hidden=0.25+layer_norm=dense_statistics": dict(
        prune_hidden_size=True, hidden_sparsity=0.25, hidden_layer_norm="dense_statistics"
    ),
}

# The ablations every seed runs (the others run seed 0); the mlp4 pass runs exactly these.
SEEDED_ABLATIONS = ("soft_pruning=none", "pruning_epochs=0.5", "hidden=0.5", "block_floor=0.18", "lr_per_stage",
                    "block_floor=0.9_of_uniform", "layer_norm=masked", "layer_norm=gradual",
                    "layer_norm=rescaled", "layer_norm=dense_statistics", "min_mlp_width=32",
                    "min_mlp_width=64", "carry_optimizer_state")  # fmt: skip
# The ablations the 6-epoch passes run with every seed (the mid pass adds one at seed 0).
MID_ABLATIONS = ("layer_norm=masked", "layer_norm=dense_statistics", "min_mlp_width=32", "min_mlp_width=64",
                 "min_mlp_width=112", "hidden=0.5", "hidden=0.6")  # fmt: skip
# The small pass's ablations (every seed planned): its 60% ends below the dense control, only a little ahead of
# Torch-Pruning; which knob moves it? round_to=8 leaves q/k and v of its 16-wide heads two sizes (8 or 16).
# hidden=0.25 (48 residual channels at 80%, not 32) won at 80% on the small-long pass: does it on 3 extra epochs?
SMALL_ABLATIONS = ("round_to=1", "min_mlp_width=64", "hidden=0.5", "layer_norm=masked", "soft_pruning=none",
                   "block_floor=0.9_of_uniform", "importance=taylor", "allocation=uniform", "hidden=off",
                   "pruning_epochs=2", "admm_updates=50", "block_floor=0.9_of_uniform+layer_norm=masked",
                   "kd+distillation_stages=all", "hidden=0.25")  # fmt: skip
# The small-long pass's ablations (every seed): which knob opens the lead where 10 extra epochs let Torch-Pruning
# catch up? The layer norms (this budget's default is `masked`, chosen on the main shape), a longer gradual stage,
# a structure closer to uniform, and a wider (48 channels) or narrower (24) residual stream than the default's 32
# at 80%.
SMALL_LONG_ABLATIONS = ("layer_norm=dense_statistics", "pruning_epochs=5", "block_floor=0.9_of_uniform",
                        "hidden=0.25", "hidden=0.7", "hidden=0.25+layer_norm=dense_statistics")  # fmt: skip
MLP4_MID_ABLATIONS = ("layer_norm=masked", "layer_norm=dense_statistics", "min_mlp_width=96", "hidden=0.5",
                      "hidden=0.6")  # fmt: skip
# The mlp4-long pass's: does a wider residual stream (72 channels at 80%, not the rule's 48), alone and with the dense
# statistics, win with 10 extra epochs on the second shape as it did on the third (48 of 64 channels, not 32)? It
# did not; then the third shape's two other knobs that gained at 80% on its long budget (+0.10, +0.09) were added.
MLP4_LONG_ABLATIONS = ("hidden=0.25", "hidden=0.25+layer_norm=dense_statistics", "layer_norm=dense_statistics",
                       "block_floor=0.9_of_uniform")  # fmt: skip
# Then the stronger teacher on this budget (`+kd_cnn`; seeds 0-1 first, 2-3 once those had run), where 7-10 epochs
# may take more from it than the small pass's 3 did, and distilling gohsp's pruning stage from it too (seed 0).
MLP4_LONG_TEACHER_ABLATIONS = ("kd_cnn+distillation_stages=all",)


@dataclass(frozen=True)
class Settings:
    """Everything a pass depends on; stored in every result file."""

    name: str = "main"  # the pass; its runs are named `<name>-...` (no prefix for main)
    train_size: int | None = None  # None: all 60,000
    test_size: int | None = None  # None: all 10,000
    hidden_size: int = 128
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 256
    dense_epochs: float = 30
    dense_learning_rate: float = 1e-3
    dense_seed: int = 0  # another seed trains another dense model of the shape (retraining one is bit-identical)
    admm_epochs: float = 1
    finetune_epochs: float = 2
    learning_rate: float = 5e-4
    paper_update_steps: int = 50  # ADMM / SGMP interval of gohsp_paper and sgmp (gohsp derives its own)
    batch_size: int = 128
    label_smoothing: float = 0.1
    weight_decay: float = 0.05
    methods: tuple = ALL_METHODS
    sparsities: tuple = (0.4, 0.6, 0.8)
    seeds: tuple = (0, 1)
    more_seeds: tuple = ("gohsp", "torch_pruning")  # the methods that get every seed at 60/80%
    distillation: bool = True  # gohsp+kd and torch_pruning+kd at 60/80%
    distillation_seeds: tuple = (0,)  # the seeds of the distillation column
    weight_averaging: bool = False  # gohsp+ema and torch_pruning+ema at 60/80%, every seed
    cnn_teacher_seeds: tuple = ()  # the seeds of gohsp+kd_cnn and torch_pruning+kd_cnn (a stronger teacher)
    cnn_teacher_epochs: float = 6  # 92.5% on the test set (the ViTs' dense models: 88.8-89.2%)
    ablations: tuple | None = None  # names of ABLATIONS to run at 60/80% (None: all of them)
    ablation_seeds: tuple = SEEDED_ABLATIONS  # the ablations run with every seed (the others: seed 0)
    ranking_samples: int = 512
    taylor_batches: int = 10
    tp_bisection_steps: int = 10

    @property
    def shape(self) -> str:
        return f"{self.hidden_size}x{self.num_hidden_layers}-mlp{self.intermediate_size}"

    @property
    def extra_epochs(self) -> float:
        return self.admm_epochs + self.finetune_epochs


PASSES = {
    "main": Settings(weight_averaging=True,
                     ablation_seeds=SEEDED_ABLATIONS + ("hidden=0.5+min_mlp_width=64", "hidden=0.6", "hidden=0.7")),
    "long": Settings(name="long", admm_epochs=3, finetune_epochs=7, methods=("gohsp", "torch_pruning"),
                     seeds=(0, 1, 2), sparsities=(0.8,),
                     ablations=("block_floor=0.15", "block_floor=0.18", "soft_pruning=none", "pruning_epochs=1",
                                "pruning_epochs=5", "normalize_block_scores", "lr_per_stage",
                                "hidden=0.6", "block_floor=0.9_of_uniform", "allocation=uniform",
                                "allocation=uniform+round_to=2+hidden=0.5625",
                                "allocation=uniform+round_to=2+hidden=0.5625+soft_pruning=none", "importance=taylor",
                                TP_RECIPE, TP_RECIPE + "+layer_norm=plain", "layer_norm=plain", "layer_norm=masked",
                                "layer_norm=gradual", "layer_norm=rescaled", "layer_norm=dense_statistics",
                                "hidden=0.25", "hidden=0.25+layer_norm=dense_statistics"),
                     ablation_seeds=("block_floor=0.15", "block_floor=0.18", "lr_per_stage",
                                     "block_floor=0.9_of_uniform", "allocation=uniform+round_to=2+hidden=0.5625",
                                     "allocation=uniform+round_to=2+hidden=0.5625+soft_pruning=none",
                                     "importance=taylor", TP_RECIPE, TP_RECIPE + "+layer_norm=plain",
                                     "layer_norm=plain", "layer_norm=masked", "layer_norm=gradual",
                                     "layer_norm=rescaled", "layer_norm=dense_statistics", "hidden=0.25",
                                     "hidden=0.25+layer_norm=dense_statistics")),
    # Between the two budgets (6 extra epochs, split like the long pass's): where the layer norm's choice flips.
    # Seeds 2 and 3 (and the MLP floors 64 and 112) were run side by side on a GPU: compare them with the same seeds.
    "mid": Settings(name="mid", admm_epochs=2, finetune_epochs=4, methods=("gohsp", "torch_pruning"),
                    sparsities=(0.6, 0.8), distillation=False, seeds=(0, 1, 2, 3),
                    ablations=MID_ABLATIONS + ("soft_pruning=none+layer_norm=plain",), ablation_seeds=MID_ABLATIONS),
    # Half-way between 3 and 6 extra epochs (4.5, split 1.5 + 3 like the others): which layer norm wins there.
    "mid45": Settings(name="mid45", admm_epochs=1.5, finetune_epochs=3, methods=("gohsp", "torch_pruning"),
                      sparsities=(0.8,), distillation=False,
                      ablations=("layer_norm=masked", "layer_norm=dense_statistics")),
    # Beyond the goals' budgets: 90% removed, where the structure has the least room (main shape, 3 and 6 extra epochs).
    "high": Settings(name="high", methods=("gohsp", "torch_pruning"), sparsities=(0.9,), seeds=(0, 1, 2, 3),
                     distillation=False, ablations=()),
    # 85%: between 80%, where `masked` layer norms won, and 90%, where they lost (MASKED_LAYER_NORM_MAX_SPARSITY).
    "high-mid": Settings(name="high-mid", admm_epochs=2, finetune_epochs=4, methods=("gohsp", "torch_pruning"),
                         sparsities=(0.85, 0.9), seeds=(0, 1, 2, 3), distillation=False,
                         ablations=("layer_norm=masked", "layer_norm=dense_statistics"),
                         ablation_seeds=("layer_norm=masked", "layer_norm=dense_statistics")),
    # A second shape (MLP ratio 4); its dense model trains 10 epochs, not 30, to fit one sitting on 2 cores.
    "mlp4": Settings(name="mlp4", hidden_size=96, intermediate_size=384, dense_epochs=10, methods=("gohsp", "torch_pruning"),
                     sparsities=(0.6, 0.8), seeds=(0, 1, 2, 3), distillation=False, ablations=SEEDED_ABLATIONS),
    # The second shape at 90% removed (3 extra epochs): does gohsp's lead at the tightest budget hold on it?
    "mlp4-high": Settings(name="mlp4-high", hidden_size=96, intermediate_size=384, dense_epochs=10,
                          methods=("gohsp", "torch_pruning"), sparsities=(0.9,), seeds=(0, 1, 2, 3), distillation=False,
                          ablations=()),
    # The second shape with the mid pass's 6 extra epochs: does the layer norms' default hold on another shape?
    "mlp4-mid": Settings(name="mlp4-mid", hidden_size=96, intermediate_size=384, dense_epochs=10, admm_epochs=2,
                         finetune_epochs=4, methods=("gohsp", "torch_pruning"), sparsities=(0.6, 0.8),
                         seeds=(0, 1, 2, 3), distillation=False,
                         ablations=MLP4_MID_ABLATIONS, ablation_seeds=MLP4_MID_ABLATIONS),
    # The second shape with the long pass's 10 extra epochs: the goals' long budget on another shape (80% first;
    # 60% and seed 3 were added once 80% had run).
    "mlp4-long": Settings(name="mlp4-long", hidden_size=96, intermediate_size=384, dense_epochs=10, admm_epochs=3,
                          finetune_epochs=7, methods=("gohsp", "torch_pruning"), sparsities=(0.6, 0.8),
                          seeds=(0, 1, 2, 3), distillation=False, cnn_teacher_seeds=(0, 1, 2, 3),
                          ablations=MLP4_LONG_ABLATIONS + MLP4_LONG_TEACHER_ABLATIONS,
                          ablation_seeds=MLP4_LONG_ABLATIONS),
    # A third, smaller shape (hidden 64, MLP ratio 4; its dense model trains 10 epochs): 60-80% removed leaves it
    # 60-120 thousand parameters, about what 85-90% leaves the main shape, where gohsp's lead appeared. Do the
    # goals' budgets on a smaller model behave like the high budgets on the main one? 3 extra epochs (4 seeds) and,
    # at 80%, the long pass's 10.
    "small": Settings(name="small", hidden_size=64, intermediate_size=256, dense_epochs=10,
                      methods=("gohsp", "torch_pruning"), sparsities=(0.6, 0.8), seeds=(0, 1, 2, 3),
                      distillation_seeds=(0, 1, 2, 3), cnn_teacher_seeds=(0, 1, 2, 3), ablations=SMALL_ABLATIONS,
                      ablation_seeds=SMALL_ABLATIONS),
    "small-long": Settings(name="small-long", hidden_size=64, intermediate_size=256, dense_epochs=10, admm_epochs=3,
                           finetune_epochs=7, methods=("gohsp", "torch_pruning"), sparsities=(0.6, 0.8), seeds=(0, 1, 2),
                           distillation_seeds=(0, 1, 2), ablations=SMALL_LONG_ABLATIONS,
                           ablation_seeds=SMALL_LONG_ABLATIONS),
}  # fmt: skip
QUICK = Settings(train_size=6000, test_size=2000, dense_epochs=8, admm_epochs=1, finetune_epochs=1,
                 paper_update_steps=10, sparsities=(0.6,), seeds=(0,), ranking_samples=256, tp_bisection_steps=6)  # fmt: skip


class FashionMNIST(torch.utils.data.Dataset):
    """Debian's Fashion-MNIST idx files as normalised (1, 28, 28) tensors."""

    def __init__(self, split: str, size: int | None = None, source: Path = SOURCE):
        prefix = {"train": "train", "test": "t10k"}[split]
        if not (source / f"{prefix}-images-idx3-ubyte.gz").exists():
            raise SystemExit(f"Fashion-MNIST not found in {source}: run `apt-get install -y dataset-fashion-mnist`.")
        images = torch.from_numpy(read_idx(source / f"{prefix}-images-idx3-ubyte.gz")[:size].copy())
        self.pixel_values = ((images.float() / 255 - 0.2860) / 0.3530).unsqueeze(1)
        self.labels = torch.from_numpy(read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")[:size].astype(np.int64))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


def training_kwargs(s: Settings, seed: int) -> dict:
    return dict(per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=500, weight_decay=s.weight_decay,
                label_smoothing_factor=s.label_smoothing, lr_scheduler_type="cosine", seed=seed, use_cpu=USE_CPU,
                report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=50, dataloader_num_workers=0)  # fmt: skip


class DistillationTrainer(Trainer):
    """A plain Trainer whose loss is distilled from a teacher, as gohsp's fine-tuning stage does it."""

    def __init__(self, teacher, alpha: float, temperature: float, **kwargs):
        super().__init__(**kwargs)
        teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        self.teacher, self.alpha, self.temperature = teacher, alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            with torch.no_grad():
                teacher_logits = self.teacher(pixel_values=inputs["pixel_values"]).logits
            loss = distillation_loss(loss, outputs.logits, teacher_logits, self.alpha, self.temperature)
        return (loss, outputs) if return_outputs else loss


class WeightAveraging(TrainerCallback):
    """An exponential moving average of the trainable weights over fine-tuning (Polyak averaging, timm's
    `ModelEma`), copied into the model when the stage ends, so the last evaluation sees the average. The decay
    warms up as (1 + n) / (10 + n) over the first updates. In a GOHSPTrainer it averages only the fine-tuning
    stage (the pruned model, whose structure no longer changes)."""

    def __init__(self, trainer: Trainer, decay: float):
        self.trainer, self.decay, self.average, self.updates = trainer, decay, None, 0

    def _model(self):
        active = getattr(self.trainer, "stage", "finetune") == "finetune"  # a plain Trainer has no stages
        return self.trainer.model if active else None  # the Trainer's model: a GOHSPTrainer swaps it at the prune

    def on_train_begin(self, args, state, control, **kwargs):
        model, self.updates = self._model(), 0
        self.average = None if model is None else {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }  # fmt: skip

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):
        if self.average is None:
            return
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in self._model().named_parameters():
            if name in self.average:
                self.average[name].lerp_(param.detach(), weight)

    @torch.no_grad()
    def on_train_end(self, args, state, control, **kwargs):
        if self.average is None:
            return
        for name, param in self._model().named_parameters():
            if name in self.average:
                param.copy_(self.average[name])
        self.average = None


class CNNTeacher(torch.nn.Module):
    """The benchmark's stronger teacher (`+kd_cnn`): a small CNN (three 3x3 conv blocks, 32-64-128 channels,
    batch norm, max pooling, dropout), 104,650 parameters; DeiT distils from a CNN too. It takes the
    ViTs' `pixel_values` and returns `.logits` (and `.loss` with `labels`, label smoothing its own: the Trainer's
    needs a `config`), so both tools' trainers use it as is."""

    def __init__(self, num_labels: int = 10, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing, layers, channels = label_smoothing, [], 1
        for width in (32, 64, 128):
            layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.BatchNorm2d(width),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]  # fmt: skip
            channels = width
        self.features = torch.nn.Sequential(*layers, torch.nn.Flatten())  # 28 -> 14 -> 7 -> 3
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(channels * 9, num_labels))

    def forward(self, pixel_values, labels=None):
        logits = self.classifier(self.features(pixel_values))
        if labels is None:
            return ImageClassifierOutput(logits=logits)
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return ImageClassifierOutput(loss=loss, logits=logits)


class Benchmark:
    def __init__(self, settings: Settings, results_dir: Path, cache_dir: Path, data: tuple):
        self.s, self.results_dir, self.cache_dir = settings, results_dir, cache_dir
        self.train, self.test = data
        self.prefix = "" if settings.name == "main" else f"{settings.name}-"
        # Passes that train the same dense model (main, mid, mid45, long; mlp4, mlp4-mid) share it and its result,
        # named after the first of them: `dense`, `mlp4-dense` (with `--set dense_seed=N` too: that seed's model).
        key, seed = dense_key(settings), settings.dense_seed
        first = next((p for p in PASSES.values() if dense_key(replace(p, dense_seed=seed)) == key), settings)
        self.dense_name = "dense" if first.name == "main" else f"{first.name}-dense"
        self.dense_sha256 = None  # of the dense model the runs started from (set when it is loaded or trained)
        results_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ bookkeeping
    def result(self, name: str) -> dict | None:
        path = self.results_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write(self, name: str, result: dict, seconds: float) -> dict:
        dense_sha256 = self.dense_sha256 or file_sha256(self.dense_path() / "model.safetensors")
        result = {"run": name, **result, "shape": self.s.shape, "extra_epochs": self.s.extra_epochs,
                  "wall_seconds": seconds, "dense_sha256": dense_sha256, "settings": asdict(self.s),
                  "machine": run_machine(),
                  "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}  # fmt: skip
        write_json(self.results_dir / f"{name}.json", result)
        print(f"[accuracy] {name}: accuracy {result.get('accuracy', float('nan')):.4f}, "
              f"params {result.get('params', 0):,}, {seconds / 60:.1f} min", flush=True)  # fmt: skip
        return result

    # ------------------------------------------------------------------ the dense reference and its control
    def dense_path(self) -> Path:
        return self.cache_dir / f"dense-{dense_key(self.s)}"

    def dense(self) -> Path:
        """The cached dense model, trained first if the cache has none. A cached model is used only with a dense
        result made from it (same `dense_sha256`), in the results folder or kept next to it in the cache; it is
        never retrained over, so a run with other data or another results folder cannot replace it."""
        path, name = self.dense_path(), self.dense_name
        if (path / "config.json").exists():
            sha = file_sha256(path / "model.safetensors")
            saved = self.result(name)
            if saved is None and (path / "result.json").exists():
                saved = json.loads((path / "result.json").read_text())
                if saved.get("dense_sha256") == sha:
                    write_json(self.results_dir / f"{name}.json", saved)
            if saved is not None and saved.get("dense_sha256") == sha:
                self.dense_sha256 = sha  # the model this run starts from, whatever the cache holds when it ends
                return path
            raise SystemExit(
                f"{path} holds a dense model that no dense result matches ({self.results_dir / name}.json is missing "
                "or has another dense_sha256). Copy the matching result there, or delete the folder to retrain it."
            )
        s, start = self.s, time.perf_counter()
        torch.manual_seed(s.dense_seed)
        model = ViTForImageClassification(ViTConfig(
            image_size=28, patch_size=7, num_channels=1, hidden_size=s.hidden_size,
            num_hidden_layers=s.num_hidden_layers, num_attention_heads=s.num_attention_heads,
            intermediate_size=s.intermediate_size, num_labels=10))  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(tmp, num_train_epochs=s.dense_epochs, learning_rate=s.dense_learning_rate,
                                     warmup_steps=math.ceil(len(self.train) / s.batch_size), eval_strategy="epoch",
                                     **training_kwargs(s, seed=s.dense_seed))  # fmt: skip
            trainer = Trainer(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                              compute_metrics=accuracy)  # fmt: skip
            trainer.train()
            curve = [{"epoch": log["epoch"], "accuracy": log["eval_accuracy"], "loss": log["eval_loss"]}
                     for log in trainer.state.log_history if "eval_accuracy" in log]  # fmt: skip
        staging = path.with_name(path.name + ".tmp")
        model.save_pretrained(staging)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
        self.dense_sha256 = file_sha256(path / "model.safetensors")
        last = int(round(0.8 * len(curve)))
        result = self.write(name, {"method": "dense", "sparsity": 0.0, "accuracy": curve[-1]["accuracy"],
                                   **model_cost(model), "learning_curve": curve,
                                   "last_20pct_gain": curve[-1]["accuracy"] - curve[last - 1]["accuracy"]},
                            time.perf_counter() - start)  # fmt: skip
        write_json(path / "result.json", result)  # the cache keeps its own record
        return path

    def dense_model(self) -> ViTForImageClassification:
        return ViTForImageClassification.from_pretrained(self.dense())

    def control(self) -> dict:
        """The dense model trained for the same extra epochs as every pruned model."""
        return self.finetune(self.dense_model(), seed=0) | {"method": "control", "sparsity": 0.0}

    def cnn_teacher(self) -> CNNTeacher:
        """The `+kd_cnn` column's teacher, trained on the full training set once and cached like the dense model
        (its result, `<pass>-teacher-cnn.json`, holds its learning curve and the sha256 every run records)."""
        from safetensors.torch import load_file, save_file

        s, name = self.s, f"{self.prefix}teacher-cnn"
        path = self.cache_dir / f"teacher-cnn-{s.train_size}-e{s.cnn_teacher_epochs:g}"
        self.dense()  # the teacher's result, like every run's, records the dense model of its pass
        if (path / "model.safetensors").exists():
            model = CNNTeacher(label_smoothing=s.label_smoothing)
            model.load_state_dict(load_file(path / "model.safetensors"))
            sha, saved = file_sha256(path / "model.safetensors"), self.result(name)
            if saved is None:  # trained for another pass or folder (a CNN does not depend on the ViT): its record,
                # renamed to this pass and its dense model, says where it was trained (`trained_in`, its settings)
                cached = json.loads((path / "result.json").read_text())
                saved = {**cached, "run": name, "shape": s.shape, "extra_epochs": s.extra_epochs,
                         "dense_sha256": self.dense_sha256, "trained_in": cached["run"]}  # fmt: skip
                write_json(self.results_dir / f"{name}.json", saved)
            if saved.get("teacher_sha256") != sha:
                raise SystemExit(
                    f"{path} holds a CNN teacher that {self.results_dir / name}.json does not describe (another "
                    "teacher_sha256). Copy the matching result there, or delete the folder to retrain it."
                )
            return model.eval()
        start = time.perf_counter()
        torch.manual_seed(0)
        model = CNNTeacher(label_smoothing=s.label_smoothing)
        with tempfile.TemporaryDirectory() as tmp:
            # its label smoothing is its own (the Trainer's needs a `config`); the learning rate suits a CNN
            args = TrainingArguments(tmp, num_train_epochs=s.cnn_teacher_epochs, learning_rate=2e-3,
                                     warmup_steps=math.ceil(len(self.train) / s.batch_size), eval_strategy="epoch",
                                     **{**training_kwargs(s, seed=0), "label_smoothing_factor": 0.0})  # fmt: skip
            trainer = Trainer(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                              compute_metrics=accuracy)  # fmt: skip
            trainer.train()
            curve = [{"epoch": log["epoch"], "accuracy": log["eval_accuracy"]}
                     for log in trainer.state.log_history if "eval_accuracy" in log]  # fmt: skip
        path.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), path / "model.safetensors.tmp")
        os.replace(path / "model.safetensors.tmp", path / "model.safetensors")
        result = self.write(name, {"method": "teacher_cnn", "sparsity": 0.0, "accuracy": curve[-1]["accuracy"],
                                   "params": count_parameters(model), "learning_curve": curve,
                                   "teacher_sha256": file_sha256(path / "model.safetensors")},
                            time.perf_counter() - start)  # fmt: skip
        write_json(path / "result.json", result)
        return model.eval()

    def teacher_fields(self, teacher: str) -> dict:
        """What a run records of its `+kd_cnn` teacher: accuracy and sha256 (nothing for the dense teacher)."""
        if teacher != "cnn":
            return {}
        r = self.result(f"{self.prefix}teacher-cnn")
        return {"teacher": "cnn", "teacher_accuracy": r["accuracy"], "teacher_sha256": r["teacher_sha256"]}

    def finetune(self, model, seed: int, teacher=None, ema_decay: float | None = None) -> dict:
        s = self.s
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(tmp, num_train_epochs=s.extra_epochs, learning_rate=s.learning_rate,
                                     warmup_steps=50, **training_kwargs(s, seed))  # fmt: skip
            data = dict(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                        compute_metrics=accuracy)  # fmt: skip
            trainer = Trainer(**data) if teacher is None else DistillationTrainer(teacher, **_kd(), **data)
            if ema_decay:
                trainer.add_callback(WeightAveraging(trainer, ema_decay))
            trainer.train()
            metrics = trainer.evaluate()
        return {"accuracy": metrics["eval_accuracy"], **model_cost(model)}

    # ------------------------------------------------------------------ pruning runs
    def gohsp_trainer(self, tmp: str, method: str, sparsity: float, seed: int, teacher=None, **overrides):
        s = self.s
        kwargs = dict(admm_epochs=s.admm_epochs, finetune_epochs=s.finetune_epochs, learning_rate=s.learning_rate,
                      warmup_steps=50, ranking_samples=s.ranking_samples, overwrite_output_dir=True,
                      **training_kwargs(s, seed))  # fmt: skip
        if method in ("gohsp_paper", "sgmp"):
            kwargs["admm_update_steps"] = s.paper_update_steps
        args = GOHSPConfig(tmp, method=method, target_sparsity=sparsity, **{**kwargs, **overrides})
        return GOHSPTrainer(model=self.dense_model(), args=args, train_dataset=self.train, eval_dataset=self.test,
                            compute_metrics=accuracy, teacher_model=teacher)  # fmt: skip

    def prune(self, method: str, sparsity: float, seed: int, ema_decay: float | None = None, teacher: str = "dense",
              **overrides) -> dict:  # fmt: skip
        """One pruning run; `ema_decay` (the benchmark's weight-averaging column) and `teacher` (`"dense"`, or
        `"cnn"` for the `+kd_cnn` column) are not GOHSPConfig fields."""
        if method == "torch_pruning":
            return self.torch_pruning(sparsity, seed, ema_decay=ema_decay, teacher=teacher, **overrides)
        with tempfile.TemporaryDirectory() as tmp:
            cnn = self.cnn_teacher() if teacher == "cnn" else None
            trainer = self.gohsp_trainer(tmp, method, sparsity, seed, teacher=cnn, **overrides)
            if ema_decay:
                trainer.add_callback(WeightAveraging(trainer, ema_decay))
            trainer.train()
            r = trainer.results
        return {"method": method + _column(overrides, ema_decay, teacher), "sparsity": sparsity, "seed": seed,
                **self.teacher_fields(teacher), "accuracy": r["pruned"]["accuracy"], "params": r["pruned"]["params"],
                "flops": r["pruned"]["flops"], "macs": r["pruned"]["macs"],
                "achieved_sparsity": r["achieved_sparsity"], "dense_accuracy": r["dense"]["accuracy"],
                "accuracy_before_hard_prune": r["before_hard_prune"]["accuracy"],
                "accuracy_after_hard_prune": r["after_hard_prune"]["accuracy"], "structure": r["structure"],
                "hidden_size": r["hidden_size"], "head_mask": r["head_mask"], "kept_heads": r["kept_heads"],
                "head_scores": r.get("head_scores"),
                "admm_final": r.get("admm_final"), "admm_schedule": r.get("admm_schedule"),
                "gradual_schedule": r.get("gradual_schedule"),
                "stage_seconds": r["stage_seconds"], "overrides": overrides, "ema_decay": ema_decay,
                # the layer norms the run used, whose default depends on the budget (older files lack the field:
                # the folder they are in says which default they ran under)
                "hidden_layer_norm": trainer.args.hidden_layer_norm if trainer.args.prune_hidden_size else None}  # fmt: skip

    def torch_pruning(self, sparsity: float, seed: int, ema_decay: float | None = None, teacher: str = "dense",
                      **overrides) -> dict:  # fmt: skip
        """Torch-Pruning's ViT recipe (Taylor importance, uniform per-layer ratio, head dims pruned), with the
        pruning ratio bisected until the model has the same parameter count as ours at this sparsity."""
        dense = self.dense_model()
        target = (1 - sparsity) * count_parameters(dense)
        low, high, sizes = 0.0, 0.95, {}
        for _ in range(self.s.tp_bisection_steps):
            ratio = (low + high) / 2
            sizes[ratio] = count_parameters(
                tp_prune(copy.deepcopy(dense), ratio, self.train, self.s.taylor_batches, seed)
            )
            low, high = (ratio, high) if sizes[ratio] > target else (low, ratio)
        ratio = min(sizes, key=lambda r: abs(sizes[r] - target))  # the closest parameter count, above or below
        model = tp_prune(copy.deepcopy(dense), ratio, self.train, self.s.taylor_batches, seed)
        after = evaluate(model, self.test)
        kd = bool(overrides.get("distillation_alpha"))
        teacher_model = (self.cnn_teacher() if teacher == "cnn" else self.dense_model()) if kd else None
        result = self.finetune(model, seed, teacher=teacher_model, ema_decay=ema_decay)
        return {"method": "torch_pruning" + _column(overrides, ema_decay, teacher), "sparsity": sparsity,
                "seed": seed, **self.teacher_fields(teacher), **result,
                "tp_pruning_ratio": ratio, "achieved_sparsity": 1 - result["params"] / count_parameters(dense),
                "accuracy_before_hard_prune": evaluate(dense, self.test), "accuracy_after_hard_prune": after,
                "structure": tp_structure(model), "hidden_size": model.vit.layers[0].attention.q_proj.in_features,
                "overrides": overrides, "ema_decay": ema_decay}  # fmt: skip

    # ------------------------------------------------------------------ the plan
    def plan(self) -> list[tuple[str, callable]]:
        """Every run of the pass, in the order they run: the ones the goals need first."""
        s, p = self.s, self.prefix
        runs = [(self.dense_name, None), (f"{p}control", self.control)]
        first = [x for x in (0.6, 0.8) if x in s.sparsities] or list(s.sparsities)  # the goals' budgets first
        for sparsity in first + [x for x in s.sparsities if x not in first]:
            for method in s.methods:
                runs.append((f"{p}{method}-s{_pct(sparsity)}-seed0", _bind(self.prune, method, sparsity, 0)))
        for sparsity in first:
            for seed in s.seeds[1:]:
                runs += [(f"{p}{m}-s{_pct(sparsity)}-seed{seed}", _bind(self.prune, m, sparsity, seed))
                         for m in s.more_seeds if m in s.methods]  # fmt: skip
            if s.distillation:
                runs += [(f"{p}{m}+kd-s{_pct(sparsity)}-seed{seed}", _bind(self.prune, m, sparsity, seed, **KD))
                         for seed in s.distillation_seeds for m in ("gohsp", "torch_pruning")]  # fmt: skip
            runs += [(f"{p}{m}+kd_cnn-s{_pct(sparsity)}-seed{seed}", _bind(self.prune, m, sparsity, seed, teacher="cnn", **KD))
                     for seed in s.cnn_teacher_seeds for m in ("gohsp", "torch_pruning")]  # fmt: skip
        if s.weight_averaging:
            runs += [(f"{p}{m}+ema-s{_pct(sparsity)}-seed{seed}", _bind(self.prune, m, sparsity, seed, ema_decay=EMA_DECAY))
                     for seed in s.seeds for sparsity in first for m in ("gohsp", "torch_pruning")]  # fmt: skip
        runs += self.ablations(first)
        return runs

    def ablations(self, sparsities) -> list[tuple[str, callable]]:
        """gohsp with one knob changed, at 60% and 80% (seed 0, every seed for `ablation_seeds`)."""
        runs = []
        for sparsity in sparsities:
            for what in ABLATIONS:
                effective = self.ablation_overrides(what, sparsity)
                if effective is None or (self.s.ablations is not None and what not in self.s.ablations):
                    continue
                seeds = self.s.seeds if what in self.s.ablation_seeds else (0,)
                runs += [(f"{self.prefix}ablation-{what}-s{_pct(sparsity)}-seed{seed}",
                          _bind(self.prune, "gohsp", sparsity, seed, **effective)) for seed in seeds]  # fmt: skip
        return runs

    def ablation_overrides(self, what: str, sparsity: float) -> dict | None:
        """The GOHSPConfig overrides of ablation `what` in this pass ("half": half the target, "rest": the pass's
        extra epochs left after the pruning stage); None when they equal the pass's defaults (that is the main
        run) or the pruning stage would be longer than the pass's extra epochs."""
        overrides = ABLATIONS[what]
        special = {"half": sparsity / 2, "rest": self.s.extra_epochs - overrides.get("admm_epochs", 0)}
        effective = {k: special.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
        scheduler = training_kwargs(self.s, seed=0)["lr_scheduler_type"]  # the defaults gohsp resolves depend on it
        resolved = GOHSPConfig(  # gohsp's own defaults for this pass (some depend on its epochs)
            tempfile.gettempdir(),
            target_sparsity=sparsity,
            lr_scheduler_type=scheduler,
            use_cpu=True,
            admm_epochs=self.s.admm_epochs,
            finetune_epochs=self.s.finetune_epochs,
        )
        defaults = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(GOHSPConfig)}
        if all(defaults.get(k) == v for k, v in effective.items()) or effective.get("finetune_epochs", 0) < 0:
            return None
        return effective

    def run(self, patterns: list[str]) -> None:
        for name, fn in self.plan():
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if fn is None:
                self.dense()
                continue
            if self.result(name) is not None:
                print(f"[accuracy] {name}: done already, skipped", flush=True)
                continue
            start = time.perf_counter()
            try:
                result = fn()
            except UnreachableSparsityError as error:  # a planned ablation this shape's budget cannot hold
                print(f"[accuracy] {name}: not run: {error}", flush=True)
                continue
            self.write(name, result, time.perf_counter() - start)


def run_machine() -> dict:
    """The machine a run trained on: `speed.machine()`, and with `--gpu` the GPU's name."""
    if USE_CPU:
        return machine()
    return machine() | {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # a result file is whole or absent


def dense_key(s: Settings) -> str:
    """What the dense model depends on (its cache folder's name)."""
    shape = f"{s.hidden_size}x{s.num_hidden_layers}x{s.num_attention_heads}x{s.intermediate_size}"
    seed = f"-seed{s.dense_seed}" if s.dense_seed else ""  # seed 0's folders keep the names they had
    return f"{s.train_size}-{shape}-e{s.dense_epochs:g}-lr{s.dense_learning_rate:g}{seed}"


def _pct(sparsity: float) -> int:
    return round(100 * sparsity)


def _kd() -> dict:
    return {"alpha": KD["distillation_alpha"], "temperature": KD["distillation_temperature"]}


def _column(overrides: dict, ema_decay: float | None, teacher: str = "dense") -> str:
    """The recipe columns a run's method name carries: `+kd` (distillation from the dense model) or `+kd_cnn`
    (from the CNN teacher), then `+ema` (weight averaging)."""
    kd = ("+kd" + ("_cnn" if teacher == "cnn" else "")) if overrides.get("distillation_alpha") else ""
    return kd + ("+ema" if ema_decay else "")


def _bind(fn, *args, **kwargs):
    def bound(*more_args, **more_kwargs):
        return fn(*args, *more_args, **{**kwargs, **more_kwargs})

    return bound


# ---------------------------------------------------------------------- Torch-Pruning
def tp_attention_modules(model) -> list:
    from transformers.models.vit.modeling_vit import ViTAttention

    return [m for m in model.modules() if isinstance(m, ViTAttention)]


def tp_structure(model) -> list[dict]:
    """Per block: heads, head dim, the (model-wide) hidden size and MLP width Torch-Pruning left."""
    return [{"heads": layer.attention.num_attention_heads, "head_dim": layer.attention.head_dim,
             "hidden": layer.attention.q_proj.in_features, "mlp": layer.mlp.fc1.out_features}
            for layer in model.vit.layers]  # fmt: skip


def tp_prune(model, ratio: float, train, batches: int, seed: int):
    """Torch-Pruning's HF ViT example on transformers 5.x module names: `BasePruner`, Taylor importance,
    `num_heads` from q/k/v_proj, head dims pruned, the classifier left alone."""
    import torch_pruning as tp

    attentions = tp_attention_modules(model)
    num_heads = {proj: m.num_attention_heads for m in attentions for proj in (m.q_proj, m.k_proj, m.v_proj)}
    example = train[0]["pixel_values"].unsqueeze(0)
    pruner = tp.pruner.BasePruner(model, example, importance=tp.importance.TaylorImportance(), pruning_ratio=ratio,
                                  global_pruning=False, ignored_layers=[model.classifier], num_heads=num_heads,
                                  prune_head_dims=True, prune_num_heads=False,
                                  output_transform=lambda out: out.logits.sum())  # fmt: skip
    model.zero_grad()
    loader = torch.utils.data.DataLoader(
        train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    for i, batch in enumerate(loader):
        if i == batches:
            break
        model(**batch).loss.backward()
    for group in pruner.step(interactive=True):
        group.prune()
    model.zero_grad()
    for m in attentions:  # transformers reads head_dim and scaling, not the weight shapes
        m.head_dim = m.q_proj.out_features // m.num_attention_heads
        m.scaling = m.head_dim**-0.5
    return model


@torch.no_grad()
def evaluate(model, test) -> float:
    model.eval()
    loader = torch.utils.data.DataLoader(test, batch_size=500)
    correct = sum(int((model(pixel_values=b["pixel_values"]).logits.argmax(-1) == b["labels"]).sum()) for b in loader)
    return correct / len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset and few epochs, to check that it works")
    parser.add_argument("--passes", default=",".join(PASSES), help=f"comma-separated passes: {', '.join(PASSES)}")
    parser.add_argument("--runs", default="*", help="comma-separated fnmatch patterns of run names (default: all)")
    parser.add_argument("--results_dir", type=Path, help="default: benchmarks/results/accuracy[_quick]")
    parser.add_argument("--cache_dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--source_dir", type=Path, default=SOURCE, help="folder of the Fashion-MNIST idx files")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a setting of every pass, e.g. --set train_size=512 (for smoke tests)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the run names and exit")
    parser.add_argument("--gpu", action="store_true", help="train on the GPU (give it its own --results_dir)")
    args = parser.parse_args()
    global USE_CPU
    USE_CPU = not args.gpu
    passes = {"main": QUICK} if args.quick else {name: PASSES[name] for name in args.passes.split(",")}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in Settings.__dataclass_fields__:
            parser.error(f"unknown setting {key!r}; settings: {', '.join(Settings.__dataclass_fields__)}")
        passes = {name: replace(s, **{key: json.loads(value)}) for name, s in passes.items()}
    results_dir = args.results_dir or ROOT / "benchmarks" / "results" / (
        "accuracy_quick" if args.quick else "accuracy"
    )
    if USE_CPU:
        # 2 threads (the machine's cores); OMP_NUM_THREADS=1 lets two runs share 2 cores (each result records it)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))
    first = next(iter(passes.values()))
    data = (
        FashionMNIST("train", first.train_size, args.source_dir),
        FashionMNIST("test", first.test_size, args.source_dir),
    )
    benches = [Benchmark(s, results_dir, args.cache_dir, data) for s in passes.values()]
    if args.list:
        print("\n".join(name for bench in benches for name, _ in bench.plan()))
        return
    start = time.perf_counter()
    for bench in benches:
        bench.run(args.runs.split(","))
    print(f"[accuracy] done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
