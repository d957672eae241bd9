"""Smoke test of `benchmarks/accuracy.py` (the accuracy benchmark) with tiny settings.

The benchmark reads Fashion-MNIST's idx files; here it reads scikit-learn's digits written in the same format,
so the test needs no apt package. It checks the real script: result files, skip-if-exists, the Torch-Pruning
run at the same parameter count, and the tables and plots made from the JSON.
"""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[1]
RUNS = "dense,control,gohsp-s60-seed0,torch_pruning-s60-seed0,ablation-importance=norm-s60-seed0"
TINY = ["--quick", "--set", "train_size=320", "--set", "test_size=128", "--set", "dense_epochs=1",
        "--set", "ranking_samples=32", "--set", "tp_bisection_steps=3", "--set", "taylor_batches=2"]  # fmt: skip


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def digits_as_idx(folder: Path) -> Path:
    images, labels = load_digits(return_X_y=True)
    x = torch.nn.functional.interpolate(torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8), size=28)
    x = (x[:, 0] * 255 / 16).round().numpy()
    folder.mkdir()
    for prefix, part in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x[part])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels[part])
    return folder


def bench(tmp_path: Path, *args: str) -> str:
    command = [sys.executable, str(REPO / "benchmarks" / "accuracy.py"), *TINY, "--source_dir", str(tmp_path / "idx"),
               "--results_dir", str(tmp_path / "results"), "--cache_dir", str(tmp_path / "cache"), *args]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_accuracy_benchmark_runs_skips_and_reports(tmp_path):
    digits_as_idx(tmp_path / "idx")
    out = bench(tmp_path, "--runs", RUNS)
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(results) == set(RUNS.split(","))
    dense = results["dense"]
    assert len(dense["learning_curve"]) == 1 and dense["params"] > 0
    for name in ("gohsp-s60-seed0", "torch_pruning-s60-seed0", "ablation-importance=norm-s60-seed0"):
        r = results[name]
        assert abs(r["achieved_sparsity"] - 0.6) < 0.05, (name, r["achieved_sparsity"])
        assert 0 <= r["accuracy"] <= 1 and r["settings"]["train_size"] == 320 and r["machine"]["date"]
        for key in ("accuracy_before_hard_prune", "accuracy_after_hard_prune", "seed", "sparsity", "method"):
            assert key in r, (name, key)
        assert r["shape"] == "128x6-mlp256" and r["extra_epochs"] == 2
    assert results["control"]["params"] == dense["params"]
    assert results["gohsp-s60-seed0"]["head_scores"] is not None
    assert results["ablation-importance=norm-s60-seed0"]["overrides"] == {"importance": "norm"}
    assert "ablation-importance=norm-s60-seed0: accuracy" in out

    again = bench(tmp_path, "--runs", RUNS)
    assert "gohsp-s60-seed0: done already, skipped" in again and "Training" not in again

    tables = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_tables.py"),
                             str(tmp_path / "results")], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "| torch_pruning | " in tables and "main, 60%: GOHSP vs the dense control" in tables
    assert "| importance=norm | " in tables
    plots = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plots.py"), "--accuracy_dir",
                            str(tmp_path / "results"), "--plots_dir", str(tmp_path / "plots")],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert (tmp_path / "plots" / "accuracy_vs_sparsity.png").stat().st_size > 1000, plots
    assert (tmp_path / "plots" / "head_scores.png").exists()
