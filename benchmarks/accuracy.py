"""Accuracy at equal size on Fashion-MNIST: GOHSP against SOMP, SGMP, random and Torch-Pruning, and the ablations.

    apt-get install -y dataset-fashion-mnist
    pip install torch-pruning==1.6.1            # benchmark-only dependency (in the `dev` extra)
    python benchmarks/accuracy.py               # full pass (~2.5 h on 2 CPU cores) -> results/accuracy/
    python benchmarks/accuracy.py --quick       # subset, few epochs (<20 min) -> results/accuracy_quick/
    python benchmarks/plots.py                  # the plots, from the JSON

1. A dense ViT is trained from scratch on the full training set until its test accuracy stops moving (the
   learning curve is in `dense.json`) and cached in `benchmarks/.cache/` (a fresh clone retrains it, same seed).
2. Every pruning run starts from that model and gets the same extra epochs (`admm_epochs + finetune_epochs`):
   GOHSP spends `admm_epochs` in ADMM, SGMP in its gradual schedule, and SOMP, random, Torch-Pruning and the
   dense control fine-tune for all of them. Same learning rate, batch, label smoothing and warm-up everywhere.
3. Each run writes `<results_dir>/<run>.json` as soon as it ends; a run whose file exists is skipped, so a pass
   can be finished over several sittings. `--runs` picks runs by name (fnmatch patterns).

Run names: `dense`, `control`, `<method>-s<percent>-seed<seed>` for the main table, `ablation-<what>-s60-seed0`.
"""

from __future__ import annotations

import argparse
import copy
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
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "tests")]
from helpers import accuracy  # noqa: E402
from prepare_fashion_mnist import SOURCE, read_idx  # noqa: E402

from gohsp_hf import GOHSPConfig, GOHSPTrainer, count_parameters, model_cost  # noqa: E402
from gohsp_hf.methods import GOHSP, PRUNING_METHODS, PruningMethod, RandomPruning  # noqa: E402

METHODS = ("gohsp", "somp", "sgmp", "random", "torch_pruning")
BASELINES = METHODS[1:]
FIRST_ABLATIONS = ("ranking-keep_central", "no_admm")  # they decide defaults, so they run before the 40% rows


@dataclass(frozen=True)
class Settings:
    """Everything a pass depends on; stored in every result file."""

    train_size: int | None = None  # None: all 60,000
    test_size: int | None = None  # None: all 10,000
    hidden_size: int = 128
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 256
    dense_epochs: float = 30
    dense_learning_rate: float = 1e-3
    admm_epochs: float = 1
    finetune_epochs: float = 2
    learning_rate: float = 5e-4
    admm_update_steps: int = 50
    batch_size: int = 128
    label_smoothing: float = 0.1
    weight_decay: float = 0.05
    sparsities: tuple = (0.4, 0.6, 0.8)
    seeds: tuple = (0, 1)
    ranking_samples: int = 512
    taylor_batches: int = 10
    tp_bisection_steps: int = 10


FULL = Settings()
QUICK = Settings(train_size=6000, test_size=2000, dense_epochs=8, admm_epochs=1, finetune_epochs=1,
                 admm_update_steps=10, sparsities=(0.6,), seeds=(0,), ranking_samples=256, tp_bisection_steps=6)  # fmt: skip


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
                label_smoothing_factor=s.label_smoothing, lr_scheduler_type="cosine", seed=seed, use_cpu=True,
                report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=50, dataloader_num_workers=0)  # fmt: skip


class Benchmark:
    def __init__(self, settings: Settings, results_dir: Path, cache_dir: Path, source: Path = SOURCE):
        self.s, self.results_dir, self.cache_dir = settings, results_dir, cache_dir
        self.train = FashionMNIST("train", settings.train_size, source)
        self.test = FashionMNIST("test", settings.test_size, source)
        self.extra_epochs = settings.admm_epochs + settings.finetune_epochs
        results_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ bookkeeping
    def result(self, name: str) -> dict | None:
        path = self.results_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write(self, name: str, result: dict, seconds: float) -> dict:
        dense_sha256 = hashlib.sha256((self.dense_path() / "model.safetensors").read_bytes()).hexdigest()
        result = {"run": name, **result, "wall_seconds": seconds, "dense_sha256": dense_sha256,
                  "settings": asdict(self.s), "machine": machine(),
                  "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}  # fmt: skip
        path = self.results_dir / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, path)  # a result file is whole or absent
        print(f"[accuracy] {name}: accuracy {result.get('accuracy', float('nan')):.4f}, "
              f"params {result.get('params', 0):,}, {seconds / 60:.1f} min", flush=True)  # fmt: skip
        return result

    # ------------------------------------------------------------------ the dense reference and its control
    def dense_path(self) -> Path:
        s = self.s
        key = f"{s.train_size}-{s.hidden_size}x{s.num_hidden_layers}x{s.num_attention_heads}x{s.intermediate_size}"
        return self.cache_dir / f"dense-{key}-e{s.dense_epochs:g}-lr{s.dense_learning_rate:g}"

    def dense(self) -> Path:
        path = self.dense_path()
        if (path / "config.json").exists() and self.result("dense") is not None:
            return path
        s, start = self.s, time.perf_counter()
        torch.manual_seed(0)
        model = ViTForImageClassification(ViTConfig(
            image_size=28, patch_size=7, num_channels=1, hidden_size=s.hidden_size,
            num_hidden_layers=s.num_hidden_layers, num_attention_heads=s.num_attention_heads,
            intermediate_size=s.intermediate_size, num_labels=10))  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(tmp, num_train_epochs=s.dense_epochs, learning_rate=s.dense_learning_rate,
                                     warmup_steps=math.ceil(len(self.train) / s.batch_size), eval_strategy="epoch",
                                     **training_kwargs(s, seed=0))  # fmt: skip
            trainer = Trainer(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                              compute_metrics=accuracy)  # fmt: skip
            trainer.train()
            curve = [{"epoch": log["epoch"], "accuracy": log["eval_accuracy"], "loss": log["eval_loss"]}
                     for log in trainer.state.log_history if "eval_accuracy" in log]  # fmt: skip
        staging = path.with_name(path.name + ".tmp")
        model.save_pretrained(staging)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
        last = int(round(0.8 * len(curve)))
        self.write("dense", {"method": "dense", "sparsity": 0.0, "accuracy": curve[-1]["accuracy"], **model_cost(model),
                             "learning_curve": curve,
                             "last_20pct_gain": curve[-1]["accuracy"] - curve[last - 1]["accuracy"]},
                   time.perf_counter() - start)  # fmt: skip
        return path

    def control(self) -> dict:
        """The dense model trained for the same extra epochs as every pruned model."""
        model = ViTForImageClassification.from_pretrained(self.dense())
        return self.finetune(model, seed=0) | {"method": "control", "sparsity": 0.0}

    def finetune(self, model, seed: int) -> dict:
        s = self.s
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(tmp, num_train_epochs=self.extra_epochs, learning_rate=s.learning_rate,
                                     warmup_steps=50, **training_kwargs(s, seed))  # fmt: skip
            trainer = Trainer(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                              compute_metrics=accuracy)  # fmt: skip
            trainer.train()
            metrics = trainer.evaluate()
        return {"accuracy": metrics["eval_accuracy"], **model_cost(model)}

    # ------------------------------------------------------------------ pruning runs
    def gohsp_trainer(self, tmp: str, method: str, sparsity: float, seed: int, **overrides):
        s = self.s
        kwargs = dict(admm_epochs=s.admm_epochs, finetune_epochs=s.finetune_epochs, learning_rate=s.learning_rate,
                      warmup_steps=50, admm_update_steps=s.admm_update_steps, ranking_samples=s.ranking_samples,
                      overwrite_output_dir=True, **training_kwargs(s, seed))  # fmt: skip
        args = GOHSPConfig(tmp, method=method, target_sparsity=sparsity, **{**kwargs, **overrides})
        model = ViTForImageClassification.from_pretrained(self.dense())
        return GOHSPTrainer(model=model, args=args, train_dataset=self.train, eval_dataset=self.test,
                             compute_metrics=accuracy)  # fmt: skip

    def prune(self, method: str, sparsity: float, seed: int, **overrides) -> dict:
        if method == "torch_pruning":
            return self.torch_pruning(sparsity, seed)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = self.gohsp_trainer(tmp, method, sparsity, seed, **overrides)
            trainer.train()
            r = trainer.results
        return {"method": method, "sparsity": sparsity, "seed": seed, "accuracy": r["pruned"]["accuracy"],
                "params": r["pruned"]["params"], "flops": r["pruned"]["flops"], "macs": r["pruned"]["macs"],
                "achieved_sparsity": r["achieved_sparsity"], "dense_accuracy": r["dense"]["accuracy"],
                "accuracy_after_hard_prune": r["after_hard_prune"]["accuracy"], "structure": r["structure"],
                "head_mask": r["head_mask"], "head_scores": r.get("head_scores"),
                "admm_final": r.get("admm_final"), "stage_seconds": r["stage_seconds"],
                "overrides": overrides}  # fmt: skip

    def torch_pruning(self, sparsity: float, seed: int) -> dict:
        """Torch-Pruning's ViT recipe (Taylor importance, uniform per-layer ratio, head dims pruned), with the
        pruning ratio bisected until the model has the same parameter count as ours at this sparsity."""
        dense = ViTForImageClassification.from_pretrained(self.dense())
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
        result = self.finetune(model, seed)
        return {"method": "torch_pruning", "sparsity": sparsity, "seed": seed, **result, "tp_pruning_ratio": ratio,
                "achieved_sparsity": 1 - result["params"] / count_parameters(dense),
                "accuracy_after_hard_prune": after,
                "structure": tp_structure(model)}  # fmt: skip

    # ------------------------------------------------------------------ the plan
    def plan(self) -> list[tuple[str, callable]]:
        """Every run, in the order they run: the ones the goals need first, so a partial pass says the most."""
        s, ablations = self.s, self.ablations()
        runs = [("dense", None), ("control", self.control)]
        first = [x for x in (0.6, 0.8) if x in s.sparsities]
        for sparsity in first + [x for x in s.sparsities if x not in first]:
            for method in METHODS:
                runs.append((f"{method}-s{round(100 * sparsity)}-seed0", _bind(self.prune, method, sparsity, 0)))
            if first and sparsity == first[-1]:  # then the ablations that decide defaults
                runs += [
                    (name, ablations.pop(name)) for name in list(ablations) if any(k in name for k in FIRST_ABLATIONS)
                ]
        runs += list(ablations.items())
        for sparsity in first:
            for seed in s.seeds[1:]:
                runs.append((f"gohsp-s{round(100 * sparsity)}-seed{seed}", _bind(self.prune, "gohsp", sparsity, seed)))
                runs.append((f"best_baseline-s{round(100 * sparsity)}-seed{seed}", _bind(self.best_baseline, sparsity, seed)))  # fmt: skip
        return runs

    def best_baseline(self, sparsity: float, seed: int) -> dict:
        """Another seed of the baseline with the best seed-0 accuracy at this sparsity."""
        scores = {m: self.result(f"{m}-s{round(100 * sparsity)}-seed0") for m in BASELINES}
        if any(r is None for r in scores.values()):
            raise RuntimeError(f"run every baseline at {sparsity:.0%}, seed 0, before its best baseline's seed {seed}")
        best = max(scores, key=lambda m: scores[m]["accuracy"])
        return self.prune(best, sparsity, seed)

    def ablations(self) -> dict:
        """GOHSP variants at 60% (seed 0), by run name; the ADMM/fine-tuning split also at 80%."""
        g = _bind(self.prune, "gohsp", 0.6, 0)
        variants = {
            "ranking-kl": _bind(g, ranking_similarity="kl"),
            "ranking-keep_central": _bind(g, ranking_direction="keep_central"),  # the reversed order
            "ranking-global": _bind(g, ranking_scope="global"),
            "ranking-weight_norm": _bind(self.prune, "gohsp_weight_norm_heads", 0.6, 0),
            "ranking-random": _bind(self.prune, "gohsp_random_heads", 0.6, 0),
            "no_admm": _bind(self.prune, "gohsp_no_admm", 0.6, 0),
            "heads0": _bind(g, head_sparsity=0.0),
            "heads60": _bind(g, head_sparsity=0.6),
            "admm_update_steps10": _bind(g, admm_update_steps=10),
            "admm2_ft1": _bind(g, admm_epochs=2 * self.s.admm_epochs, finetune_epochs=self.s.finetune_epochs - 1),
        }
        runs = {f"ablation-{what}-s60-seed0": fn for what, fn in variants.items()}
        split = _bind(self.prune, "gohsp", 0.8, 0, admm_epochs=2 * self.s.admm_epochs,
                      finetune_epochs=self.s.finetune_epochs - 1)  # fmt: skip
        return runs | {"ablation-admm2_ft1-s80-seed0": split}

    def run(self, patterns: list[str]) -> None:
        for name, fn in self.plan():
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if name == "dense":
                self.dense()
                continue
            if self.result(name) is not None:
                print(f"[accuracy] {name}: done already, skipped", flush=True)
                continue
            start = time.perf_counter()
            self.write(name, fn(), time.perf_counter() - start)


def _bind(fn, *args, **kwargs):
    def bound(*more_args, **more_kwargs):
        return fn(*args, *more_args, **{**kwargs, **more_kwargs})

    return bound


# ---------------------------------------------------------------------- ablation methods
class WeightNormHeads(GOHSP):
    """GOHSP with heads ranked by the L2 norm of their q/k/v/o weights instead of the graph."""

    rank_heads = PruningMethod.rank_heads


class RandomHeads(GOHSP):
    """GOHSP with random heads (seeded) instead of the graph ranking."""

    rank_heads = RandomPruning.rank_heads


class NoADMM(GOHSP):
    """GOHSP's head ranking and projection without ADMM: a straight hard prune of the dense weights, with the
    ADMM epochs spent fine-tuning instead."""

    stage_name = None
    pruning_stage = PruningMethod.pruning_stage


ABLATION_METHODS = {"gohsp_weight_norm_heads": WeightNormHeads, "gohsp_random_heads": RandomHeads,
                    "gohsp_no_admm": NoADMM}  # fmt: skip
PRUNING_METHODS.update(ABLATION_METHODS)


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
    parser.add_argument("--runs", default="*", help="comma-separated fnmatch patterns of run names (default: all)")
    parser.add_argument("--results_dir", type=Path, help="default: benchmarks/results/accuracy[_quick]")
    parser.add_argument("--cache_dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--source_dir", type=Path, default=SOURCE, help="folder of the Fashion-MNIST idx files")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a setting, e.g. --set train_size=512 (for smoke tests)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the run names and exit")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in Settings.__dataclass_fields__:
            parser.error(f"unknown setting {key!r}; settings: {', '.join(Settings.__dataclass_fields__)}")
        settings = replace(settings, **{key: json.loads(value)})
    results_dir = args.results_dir or ROOT / "benchmarks" / "results" / (
        "accuracy_quick" if args.quick else "accuracy"
    )
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    bench = Benchmark(settings, results_dir, args.cache_dir, args.source_dir)
    if args.list:
        print("\n".join(name for name, _ in bench.plan()))
        return
    start = time.perf_counter()
    bench.run(args.runs.split(","))
    print(f"[accuracy] done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
