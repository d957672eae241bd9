"""A small GOHSP run on digits for the process-level tests; writes what each rank ended with.

    python tests/scripts/gohsp_run.py OUT [--interrupt STAGE:STEP] [--resume] [--method gohsp] [--soft_pruning admm] [--admm_steps N]
        [--hidden] [--layer_norm rescaled]
    accelerate launch --config_file examples/accelerate_configs/cpu_2proc.yaml tests/scripts/gohsp_run.py OUT

`--interrupt admm:14` raises at step 14 of the ADMM stage (after the checkpoint of step 12), as a crash would.
"""

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_model  # noqa: E402
from helpers import DigitsDataset  # noqa: E402

from gohsp_hf import GOHSPConfig, GOHSPTrainer  # noqa: E402


class Interrupted(RuntimeError):
    pass


class Interrupt(TrainerCallback):
    def __init__(self, stage: str, step: int):
        self.stage, self.step = stage, step

    def on_step_end(self, args, state, control, **kwargs):
        if Path(args.output_dir).name == self.stage and state.global_step == self.step:
            raise Interrupted(f"interrupted at {self.stage} step {self.step}")


parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--interrupt")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--method", default="gohsp")
parser.add_argument("--admm_steps", type=int, default=40)
parser.add_argument("--save_steps", type=int, default=6)
parser.add_argument("--lora", action="store_true")
parser.add_argument("--hidden", action="store_true", help="prune residual-stream channels too")
parser.add_argument("--layer_norm", default="dense_statistics", help="hidden_layer_norm, with --hidden")
parser.add_argument("--lr_per_stage", action="store_true", help="a learning-rate schedule per stage (default: one)")
parser.add_argument("--soft_pruning", default="admm")  # resume and DDP are tested through the stage with most state
cli = parser.parse_args()

args = GOHSPConfig(
    str(cli.out / "run"),
    method=cli.method,
    use_cpu=True,
    target_sparsity=0.4,
    soft_pruning=cli.soft_pruning,
    admm_max_steps=cli.admm_steps,
    admm_update_steps=6,
    finetune_max_steps=18,
    per_device_train_batch_size=16,
    learning_rate=3e-3,
    ranking_samples=32,
    save_strategy="steps",
    save_steps=cli.save_steps,
    logging_steps=6,
    report_to=[],
    disable_tqdm=True,
    seed=0,
    resume_from_checkpoint="last" if cli.resume else None,
    finetune_with_lora=cli.lora,
    prune_hidden_size=cli.hidden,
    hidden_layer_norm=cli.layer_norm,
    lr_scheduler_across_stages=False if cli.lr_per_stage else None,  # None: the method's default
)
callbacks = [Interrupt(*cli.interrupt.split(":")[:1], int(cli.interrupt.split(":")[1]))] if cli.interrupt else []
trainer = GOHSPTrainer(
    model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 400), callbacks=callbacks
)
distributed = torch.distributed.is_initialized()
rank = torch.distributed.get_rank() if distributed else 0
try:
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    status = "finished"
except Interrupted:
    status = "interrupted"
state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
digest = hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in state.values())).hexdigest()
torch.save(state, cli.out / f"weights_rank{rank}.pt")
(cli.out / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "status": status,
            "world_size": torch.distributed.get_world_size() if distributed else 1,
            "structure": trainer.structure.to_dict() if trainer.structure else None,
            "weights_sha256": digest,
            "residuals": [
                log["admm_residual"]
                for log in trainer.results.get("log_history", {}).get("admm", [])
                if "admm_residual" in log
            ],
        }
    )
)
if distributed:
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
sys.stdout.flush()
os._exit(0)  # gloo can abort at interpreter exit (exit code -6)
