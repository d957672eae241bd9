"""A tiny GOHSP run for `accelerate launch` with 2 CPU processes; every rank writes what it ended with.

accelerate launch --config_file examples/accelerate_configs/cpu_2proc.yaml tests/scripts/ddp_gohsp.py OUT
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_model  # noqa: E402
from helpers import DigitsDataset  # noqa: E402

from gohsp_hf import GOHSPConfig, GOHSPTrainer  # noqa: E402

out = Path(sys.argv[1])
args = GOHSPConfig(
    str(out / "run"),
    use_cpu=True,
    target_sparsity=0.4,
    admm_max_steps=12,
    admm_update_steps=4,
    finetune_max_steps=6,
    per_device_train_batch_size=16,
    learning_rate=3e-3,
    ranking_samples=32,
    save_strategy="no",
    report_to=[],
    disable_tqdm=True,
    ddp_find_unused_parameters=False,
    seed=0,
)
trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 512))
trainer.train()
rank = torch.distributed.get_rank()
state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
digest = hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in state.values())).hexdigest()
(out / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "world_size": torch.distributed.get_world_size(),
            "structure": trainer.structure.to_dict(),
            "weights_sha256": digest,
            "residuals": [
                log["admm_residual"] for log in trainer.results["log_history"]["admm"] if "admm_residual" in log
            ],
        }
    )
)
torch.distributed.barrier()
torch.distributed.destroy_process_group()
sys.stdout.flush()
os._exit(0)  # gloo can abort at interpreter exit (HF_NOTES item 6)
