"""Soak: a long ADMM stage on a tiny model with frequent Z/U updates, watching the process's memory.

    python benchmarks/soak.py --minutes 30        # writes benchmarks/results/soak.json

Resident memory (RSS) is sampled every `--sample_steps` steps. "Start" is the peak RSS over the first
`--window` minutes after warm-up, "end" the peak over the last `--window` minutes; growth would show as
end > start.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from speed import machine
from transformers import TrainerCallback, ViTConfig, ViTForImageClassification

from gohsp_hf import GOHSPConfig, GOHSPTrainer


class Synthetic(torch.utils.data.Dataset):
    def __init__(self, n=4096):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class Watch(TrainerCallback):
    def __init__(self, minutes: float, sample_steps: int):
        self.deadline, self.sample_steps, self.samples = time.time() + 60 * minutes, sample_steps, []
        self.start, self.process = time.time(), psutil.Process()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.sample_steps == 0:
            self.samples.append((time.time() - self.start, state.global_step, self.process.memory_info().rss))
        if time.time() > self.deadline:
            control.should_training_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--update_steps", type=int, default=5)
    parser.add_argument("--sample_steps", type=int, default=50)
    parser.add_argument("--window", type=float, default=3, help="minutes at the start and the end compared")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "soak.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=128, num_labels=10)  # fmt: skip
    watch = Watch(args.minutes, args.sample_steps)
    with tempfile.TemporaryDirectory() as tmp:
        gohsp = GOHSPConfig(tmp, admm_max_steps=10**9, admm_update_steps=args.update_steps, finetune_epochs=0,
                            rho_max=0.5, per_device_train_batch_size=32, learning_rate=1e-3, logging_steps=100,
                            use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, seed=0)  # fmt: skip
        trainer = GOHSPTrainer(model=ViTForImageClassification(config), args=gohsp, train_dataset=Synthetic(),
                               callbacks=[watch])  # fmt: skip
        trainer.train()
    samples = watch.samples
    warm = [s for s in samples if s[0] >= 60]  # skip the first minute (allocator warm-up)
    span = warm[-1][0] - warm[0][0]
    first = [rss for t, _, rss in warm if t <= warm[0][0] + 60 * args.window]
    last = [rss for t, _, rss in warm if t >= warm[-1][0] - 60 * args.window]
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "minutes": samples[-1][0] / 60,
        "steps": samples[-1][1],
        "admm_updates": samples[-1][1] // args.update_steps,
        "peak_rss_mib_start": max(first) / 2**20,
        "peak_rss_mib_end": max(last) / 2**20,
        "growth_mib": (max(last) - max(first)) / 2**20,
        "observed_minutes": span / 60,
        "samples": [{"seconds": t, "step": step, "rss_mib": rss / 2**20} for t, step, rss in samples],
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(
        f"{result['steps']} steps, {result['admm_updates']} ADMM updates in {result['minutes']:.1f} min; peak RSS "
        f"{result['peak_rss_mib_start']:.1f} MiB at the start, {result['peak_rss_mib_end']:.1f} MiB at the end"
    )


if __name__ == "__main__":
    main()
