"""`accelerate launch` with 2 CPU processes: every rank ends with the same structure and weights, with and without
the residual width pruned, and the launch exits cleanly (so do the five launches of `test_resume.py`)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import ACCELERATE_LAUNCH

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("hidden", [False, True])
def test_two_processes_agree_and_exit_cleanly(hidden, tmp_path):
    command = [
        *ACCELERATE_LAUNCH,
        "--config_file", str(REPO / "examples" / "accelerate_configs" / "cpu_2proc.yaml"),
        str(REPO / "tests" / "scripts" / "gohsp_run.py"), str(tmp_path), "--admm_steps", "12", "--save_steps", "100",
        *(["--hidden"] if hidden else []),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # gloo's occasional abort at exit must not happen
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2  # really two processes
    assert ranks[0]["structure"] == ranks[1]["structure"] and ranks[0]["structure"] is not None
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["residuals"] == ranks[1]["residuals"] and len(ranks[0]["residuals"]) == 2
    assert (tmp_path / "run" / "model.safetensors").exists()  # rank 0 saved the pruned model
