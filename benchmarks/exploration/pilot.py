"""Pilot: a full gohsp run through benchmarks/accuracy.py's Benchmark (3 extra epochs), with overrides, to a scratch dir."""
import json, sys, time
from pathlib import Path
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests"), str(ROOT / "examples")]
import torch
from accuracy import PASSES, Benchmark, FashionMNIST
torch.set_num_threads(2)
name, sparsity, overrides = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
method = overrides.pop("method", "gohsp")
settings = PASSES[overrides.pop("pass", "main")]
bench = Benchmark(settings, Path(__file__).parent / "pilots", ROOT / "benchmarks" / ".cache", (FashionMNIST("train"), FashionMNIST("test")))
if bench.result(name) is None:
    start = time.perf_counter()
    bench.write(name, bench.prune(method, sparsity, 0, **overrides), time.perf_counter() - start)
