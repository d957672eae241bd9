"""`accelerate launch` with 2 CPU processes: every rank ends with the same structure and weights."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_two_processes_agree(tmp_path):
    accelerate = shutil.which("accelerate") or f"{sys.executable} -m accelerate.commands.launch"
    command = [
        *accelerate.split(),
        *(["launch"] if "accelerate.commands.launch" not in accelerate else []),
        "--config_file", str(REPO / "examples" / "accelerate_configs" / "cpu_2proc.yaml"),
        str(REPO / "tests" / "scripts" / "ddp_gohsp.py"), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]  # both ranks finished
    assert result.returncode == 0, result.stderr[-3000:]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2  # really two processes
    assert ranks[0]["structure"] == ranks[1]["structure"]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["residuals"] == ranks[1]["residuals"] and len(ranks[0]["residuals"]) == 3
    assert (tmp_path / "run" / "model.safetensors").exists()  # rank 0 saved the pruned model
