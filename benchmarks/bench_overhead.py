"""GOHSP's training-step cost against a plain `Trainer` step on the same model, and the head-ranking time.

For each model, plain `Trainer` runs and GOHSP ADMM-stage runs alternate (`--rounds` of each), on the same
synthetic batches. A step is timed from one `on_step_begin` to the next, so it includes the ADMM penalty,
the Z/U updates (amortised over `--update_steps`) and logging. Medians over the steps after warm-up.

    python benchmarks/bench_overhead.py          # writes benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from speed import machine
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification

from gohsp_hf import GOHSPConfig, GOHSPTrainer

MODELS = {
    "vit-64x4 (Fashion-MNIST default, 28px, patch 7)": dict(
        image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=128,
    ),
    "vit-192x6 (32px, patch 4, 65 tokens)": dict(
        image_size=32, patch_size=4, num_channels=3, hidden_size=192, num_hidden_layers=6, num_attention_heads=3,
        intermediate_size=768,
    ),
}  # fmt: skip


class StepTimer(TrainerCallback):
    """Step start times, and the process's resident memory at every step end (peak of the run)."""

    def __init__(self):
        self.starts, self.rss = [], []
        self.process = psutil.Process()

    def on_step_begin(self, args, state, control, **kwargs):
        self.starts.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.rss.append(self.process.memory_info().rss)

    def on_train_end(self, args, state, control, **kwargs):
        self.starts.append(time.perf_counter())

    def step_times(self, warmup: int) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:])][warmup:]


class Synthetic(torch.utils.data.Dataset):
    def __init__(self, config, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, config.num_channels, config.image_size, config.image_size, generator=g)
        self.y = torch.randint(0, config.num_labels, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def run(kind, config, data, steps, update_steps, batch, workdir):
    common = dict(per_device_train_batch_size=batch, learning_rate=1e-3, use_cpu=True, report_to=[],
                  save_strategy="no", disable_tqdm=True, logging_steps=10, seed=0)  # fmt: skip
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    timer = StepTimer()
    if kind == "plain":
        args = TrainingArguments(str(workdir / "plain"), max_steps=steps, **common)
        Trainer(model=model, args=args, train_dataset=data, callbacks=[timer]).train()
        return timer, None
    args = GOHSPConfig(str(workdir / "gohsp"), admm_max_steps=steps, admm_update_steps=update_steps,
                       finetune_epochs=0, ranking_samples=512, overwrite_output_dir=True, **common)  # fmt: skip
    trainer = GOHSPTrainer(model=model, args=args, train_dataset=data, callbacks=[timer])
    trainer.train()
    return timer, trainer.results["stage_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--update_steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "machine": machine(),
               "settings": {k: v for k, v in vars(args).items() if k != "output"}, "models": {}}  # fmt: skip
    for name, sizes in MODELS.items():
        config = ViTConfig(num_labels=10, **sizes)
        data = Synthetic(config, args.steps * args.batch_size)
        times = {"plain": [], "gohsp": []}
        peaks = {"plain": [], "gohsp": []}
        stages = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for kind in ("plain", "gohsp"):
                    timer, stage_seconds = run(kind, config, data, args.steps, args.update_steps, args.batch_size,
                                               Path(tmp))  # fmt: skip
                    times[kind] += timer.step_times(args.warmup)
                    peaks[kind].append(max(timer.rss) / 2**20)
                    if stage_seconds:
                        stages.append(stage_seconds)
        plain, gohsp = statistics.median(times["plain"]), statistics.median(times["gohsp"])
        mean_plain, mean_gohsp = statistics.fmean(times["plain"]), statistics.fmean(times["gohsp"])
        ranking = statistics.median(s["ranking"] for s in stages)
        admm = statistics.median(s["pruning"] for s in stages)
        results["models"][name] = {
            "median_step_s": {"plain": plain, "gohsp_admm": gohsp},
            "median_overhead": gohsp / plain - 1,
            "mean_step_s": {"plain": mean_plain, "gohsp_admm": mean_gohsp},
            "mean_overhead_including_updates": mean_gohsp / mean_plain - 1,
            "ranking_seconds_512_images": ranking,
            "admm_stage_seconds": admm,
            "ranking_share_of_ranking_plus_admm": ranking / (ranking + admm),
            # Round 1 is the clean comparison: its plain run comes before any GOHSP run of this model (later
            # rounds inherit memory the allocator kept). All rounds are listed.
            "peak_rss_mib_round1": {"plain": peaks["plain"][0], "gohsp_admm": peaks["gohsp"][0]},
            "peak_rss_mib_per_round": peaks,
            "prunable_parameters_mib": 4
            * sum(
                p.numel()
                for n, p in ViTForImageClassification(config).named_parameters()
                if ".attention." in n or ".mlp." in n
            )
            / 2**20,
        }
        r = results["models"][name]
        print(f"{name}: step plain {plain * 1e3:.1f} ms, GOHSP {gohsp * 1e3:.1f} ms (median overhead "
              f"{r['median_overhead']:+.1%}, mean incl. updates {r['mean_overhead_including_updates']:+.1%}); "
              f"ranking {ranking:.2f} s for 512 images; peak RSS (round 1) plain {peaks['plain'][0]:.0f} MiB, "
              f"GOHSP {peaks['gohsp'][0]:.0f} MiB")  # fmt: skip
    Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
