"""Smoke test of `benchmarks/accuracy.py` (the accuracy benchmark) with tiny settings.

The benchmark reads Fashion-MNIST's idx files; here it reads scikit-learn's digits written in the same format,
so the test needs no apt package. It checks the real script: result files, skip-if-exists, the Torch-Pruning
run at the same parameter count, and the tables and plots made from the JSON.
"""

import gzip
import importlib
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


def import_benchmark(name: str):
    """`benchmarks/<name>.py` as a module (the benchmarks folder is not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


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
    assert results["gohsp-s60-seed0"]["hidden_layer_norm"] == "dense_statistics"  # the default of 2 extra epochs
    assert results["ablation-importance=norm-s60-seed0"]["overrides"] == {"importance": "norm"}
    assert "ablation-importance=norm-s60-seed0: accuracy" in out

    again = bench(tmp_path, "--runs", RUNS)
    assert "gohsp-s60-seed0: done already, skipped" in again and "Training" not in again

    # Another results folder reuses the cached dense model with the cache's own record of it; without that record
    # the script stops instead of training over the cached model.
    bench(tmp_path, "--runs", "dense", "--results_dir", str(tmp_path / "other"))
    assert json.loads((tmp_path / "other" / "dense.json").read_text()) == dense
    next((tmp_path / "cache").glob("dense-*/result.json")).unlink()
    command = [sys.executable, str(REPO / "benchmarks" / "accuracy.py"), *TINY, "--source_dir", str(tmp_path / "idx"),
               "--results_dir", str(tmp_path / "third"), "--cache_dir", str(tmp_path / "cache"), "--runs", "dense"]  # fmt: skip
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert stopped.returncode != 0 and "holds a dense model that no dense result matches" in stopped.stderr

    tables = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_tables.py"),
                             str(tmp_path / "results")], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "| torch_pruning | " in tables and "main, 60%: GOHSP vs the dense control" in tables
    assert "| importance=norm | " in tables
    pooled = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_tables.py"), "--pooled",
                             str(tmp_path / "results"), str(tmp_path / "other")],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    gohsp, tp = results["gohsp-s60-seed0"]["accuracy"], results["torch_pruning-s60-seed0"]["accuracy"]
    control = results["control"]["accuracy"]
    assert pooled.strip() == (f"- 128x6-mlp256, +2 epochs, 60%: GOHSP {100 * gohsp:.2f} (n=1) - Torch-Pruning "
                              f"{100 * tp:.2f} (n=1) = {100 * (gohsp - tp):+.2f} points; against their dense control "
                              f"trained as long: GOHSP {100 * (gohsp - control):+.2f}, Torch-Pruning "
                              f"{100 * (tp - control):+.2f}")  # fmt: skip
    # the goals say how far above the control trained as long GOHSP must end for a 0.5-point lead
    assert (f"- main, 60%, against the dense control trained as long ({100 * control:.2f}): GOHSP "
            f"{100 * (gohsp - control):+.2f}, Torch-Pruning {100 * (tp - control):+.2f}; a 0.5-point lead needs GOHSP "
            f"at {0.5 + 100 * (tp - control):+.2f} or above.") in tables  # fmt: skip
    plots = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plots.py"), "--accuracy_dir",
                            str(tmp_path / "results"), "--plots_dir", str(tmp_path / "plots")],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert (tmp_path / "plots" / "accuracy_vs_sparsity.png").stat().st_size > 1000, plots
    assert (tmp_path / "plots" / "head_scores.png").exists()


def test_the_cnn_teacher_column_distils_both_tools_from_one_cached_teacher(tmp_path):
    """`+kd_cnn`: gohsp and Torch-Pruning distilled from the same CNN teacher, trained once, cached, recorded in
    each run; a cached teacher that its result does not describe stops the script."""
    digits_as_idx(tmp_path / "idx")
    runs = "dense,gohsp+kd_cnn-s60-seed0,torch_pruning+kd_cnn-s60-seed0"
    teacher = ["--set", "cnn_teacher_seeds=[0]", "--set", "cnn_teacher_epochs=1"]
    out = bench(tmp_path, *teacher, "--runs", runs)
    assert out.count("teacher-cnn: accuracy") == 1  # trained once, for the first run
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(results) == {*runs.split(","), "teacher-cnn"}
    taught = results["teacher-cnn"]
    assert taught["method"] == "teacher_cnn" and len(taught["learning_curve"]) == 1 and taught["params"] > 0
    for name in ("gohsp+kd_cnn-s60-seed0", "torch_pruning+kd_cnn-s60-seed0"):
        r = results[name]
        assert r["method"] == name.split("-")[0] and r["teacher"] == "cnn" and abs(r["achieved_sparsity"] - 0.6) < 0.05
        assert r["teacher_sha256"] == taught["teacher_sha256"] and r["teacher_accuracy"] == taught["accuracy"]
    tables = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_tables.py"),
                             str(tmp_path / "results")], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "| main | CNN | 1 | " in tables and "| gohsp+kd_cnn | " in tables and "| torch_pruning+kd_cnn | " in tables

    # another results folder uses the cached teacher and writes its record, saying where it was trained
    out = bench(tmp_path, *teacher, "--results_dir", str(tmp_path / "other"), "--runs", "gohsp+kd_cnn-s60-seed0")
    assert "teacher-cnn: accuracy" not in out  # not trained again
    copied = json.loads((tmp_path / "other" / "teacher-cnn.json").read_text())
    assert copied["trained_in"] == "teacher-cnn" and copied["learning_curve"] == taught["learning_curve"]
    assert copied["teacher_sha256"] == taught["teacher_sha256"] and copied["dense_sha256"] == taught["dense_sha256"]

    (tmp_path / "results" / "teacher-cnn.json").write_text(json.dumps({**taught, "teacher_sha256": "0" * 64}))
    (tmp_path / "results" / "gohsp+kd_cnn-s60-seed0.json").unlink()
    command = [sys.executable, str(REPO / "benchmarks" / "accuracy.py"), *TINY, *teacher, "--source_dir",
               str(tmp_path / "idx"), "--results_dir", str(tmp_path / "results"), "--cache_dir", str(tmp_path / "cache"),
               "--runs", "gohsp+kd_cnn-s60-seed0"]  # fmt: skip
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert stopped.returncode != 0 and "holds a CNN teacher that" in stopped.stderr


def test_ablations_split_each_pass_budget(tmp_path):
    """A pruning-stage ablation keeps the pass's extra epochs: the stage's length changes, fine-tuning gets the
    rest; one equal to the pass's own split or to gohsp's defaults, or longer than its budget, is not planned."""
    accuracy = import_benchmark("accuracy")
    main, long = (
        accuracy.Benchmark(accuracy.PASSES[name], tmp_path, tmp_path, (None, None)) for name in ("main", "long")
    )
    assert main.ablation_overrides("pruning_epochs=0.5", 0.8) == {"admm_epochs": 0.5, "finetune_epochs": 2.5}
    assert long.ablation_overrides("pruning_epochs=1", 0.8) == {"admm_epochs": 1.0, "finetune_epochs": 9.0}
    assert main.ablation_overrides("pruning_epochs=1", 0.8) is None  # the main pass's own 1 + 2 epochs
    assert main.ablation_overrides("pruning_epochs=5", 0.8) is None  # longer than its 3 extra epochs
    assert main.ablation_overrides("heads=half_of_target", 0.6) == {"head_sparsity": 0.3}
    assert main.ablation_overrides("importance=fisher", 0.6) is None  # the default
    assert main.ablation_overrides("lr_per_stage", 0.6) == {"lr_scheduler_across_stages": False}
    # defaults that depend on the pass's epochs: the layer norms (dense statistics at 3 extra epochs, masked at 10)
    assert main.ablation_overrides("layer_norm=dense_statistics", 0.8) is None
    assert main.ablation_overrides("layer_norm=masked", 0.8) == {"hidden_layer_norm": "masked"}
    assert long.ablation_overrides("layer_norm=masked", 0.8) is None
    assert long.ablation_overrides("layer_norm=dense_statistics", 0.8) == {"hidden_layer_norm": "dense_statistics"}
    mid45 = accuracy.Benchmark(accuracy.PASSES["mid45"], tmp_path, tmp_path, (None, None))
    assert mid45.s.extra_epochs == 4.5 and mid45.ablation_overrides("layer_norm=dense_statistics", 0.8) is None
    assert mid45.ablation_overrides("layer_norm=masked", 0.8) == {"hidden_layer_norm": "masked"}
    accuracy.ABLATIONS["across"] = dict(lr_scheduler_across_stages=True, prune_hidden_size=True)
    try:  # the defaults a method resolves itself (None in the dataclass) count as defaults too
        assert main.ablation_overrides("across", 0.8) is None
    finally:
        del accuracy.ABLATIONS["across"]


def test_results_record_the_dense_model_they_started_from(tmp_path):
    """A run's `dense_sha256` is that of the model it loaded, even if the cache changes before the run ends."""
    accuracy = import_benchmark("accuracy")
    bench = accuracy.Benchmark(accuracy.QUICK, tmp_path / "results", tmp_path / "cache", (None, None))
    model = accuracy.ViTForImageClassification(accuracy.ViTConfig(hidden_size=16, num_hidden_layers=1,
                                                                  num_attention_heads=2, intermediate_size=32))  # fmt: skip
    model.save_pretrained(bench.dense_path())
    first = accuracy.file_sha256(bench.dense_path() / "model.safetensors")
    accuracy.write_json(bench.results_dir / "dense.json", {"dense_sha256": first})
    bench.dense_model()
    with torch.no_grad():
        model.classifier.bias += 1
    model.save_pretrained(bench.dense_path())  # another model lands in the cache while the run goes on
    assert accuracy.file_sha256(bench.dense_path() / "model.safetensors") != first
    assert bench.write("gohsp-s60-seed0", {"accuracy": 0.5}, 1.0)["dense_sha256"] == first


def test_passes_of_one_shape_share_its_dense_model_and_tables_tell_passes_apart(tmp_path):
    """Every pass of a shape starts from the same dense model and names its result after the shape's first pass;
    the tables put each run in its own pass, the longest matching prefix first (`mlp4-mid-` before `mlp4-`)."""
    accuracy = import_benchmark("accuracy")
    names = {name: accuracy.Benchmark(s, tmp_path, tmp_path, (None, None)) for name, s in accuracy.PASSES.items()}
    assert {name: b.dense_name for name, b in names.items()} == {
        "main": "dense", "long": "dense", "mid": "dense", "mid45": "dense", "high": "dense", "high-mid": "dense",
        "mlp4": "mlp4-dense", "mlp4-mid": "mlp4-dense", "mlp4-high": "mlp4-dense", "mlp4-long": "mlp4-dense",
        "small": "small-dense", "small-long": "small-dense"}  # fmt: skip
    assert names["mlp4-mid"].dense_path() == names["mlp4"].dense_path() != names["mid45"].dense_path()
    # Another dense seed is another model of the shape: its own cache folder, shared and named as seed 0's.
    seeded = {name: accuracy.Benchmark(accuracy.replace(accuracy.PASSES[name], dense_seed=1), tmp_path, tmp_path,
                                       (None, None)) for name in ("mlp4", "mlp4-long")}  # fmt: skip
    assert seeded["mlp4"].dense_path() == seeded["mlp4-long"].dense_path() != names["mlp4"].dense_path()
    assert seeded["mlp4"].dense_path().name == names["mlp4"].dense_path().name + "-seed1"
    assert seeded["mlp4-long"].dense_name == "mlp4-dense"
    tables = import_benchmark("accuracy_tables")
    assert set(tables.PASSES.values()) == set(accuracy.PASSES)
    for run, pass_name in (("gohsp-s60-seed0", "main"), ("mid-gohsp-s80-seed1", "mid"), ("mid45-control", "mid45"),
                           ("mlp4-mid-torch_pruning-s60-seed0", "mlp4-mid"), ("mlp4-gohsp-s80-seed0", "mlp4"),
                           ("high-mid-gohsp-s90-seed1", "high-mid"), ("high-torch_pruning-s90-seed0", "high"),
                           ("mlp4-high-gohsp-s90-seed1", "mlp4-high"), ("small-control", "small"),
                           ("small-long-torch_pruning-s80-seed2", "small-long"), ("mlp4-long-gohsp-s80-seed2", "mlp4-long")):  # fmt: skip
        assert tables.pass_of(run) == pass_name, run
    assert tables.is_ablation("mlp4-mid-ablation-layer_norm=masked-s60-seed0")
    assert not tables.is_ablation("mlp4-mid-gohsp-s60-seed0")


def test_a_run_whose_budget_cannot_be_reached_is_reported_and_the_pass_goes_on(tmp_path, capsys):
    """A planned ablation that the shape cannot hold (the small shape keeps all its residual channels only up to
    79% removed) says so and is not written; the runs after it still run."""
    accuracy = import_benchmark("accuracy")
    bench = accuracy.Benchmark(accuracy.PASSES["small"], tmp_path, tmp_path, (None, None))
    written = []

    def unreachable():
        raise accuracy.UnreachableSparsityError("target_sparsity 0.800 cannot be reached: ...")

    bench.plan = lambda: [("small-ablation-hidden=off-s80-seed0", unreachable), ("small-next", lambda: {"ok": 1})]
    bench.write = lambda name, result, seconds: written.append(name)
    bench.run(["*"])
    assert written == ["small-next"] and not list(tmp_path.glob("*.json"))
    assert (
        "small-ablation-hidden=off-s80-seed0: not run: target_sparsity 0.800 cannot be reached"
        in capsys.readouterr().out
    )


def test_goals_pair_gohsp_and_torch_pruning_by_seed_within_a_pass():
    """The paired margin pools every pass of a shape, compares only runs of the same pass, sparsity and seed (and
    recipe column: distillation against distillation), and gives the standard error of the differences."""
    tables = import_benchmark("accuracy_tables")

    def run(method, seed, accuracy, sparsity=0.8):
        return {"method": method, "sparsity": sparsity, "seed": seed, "accuracy": accuracy, "shape": "s"}

    found = {("main", "gohsp", 0.8): [run("gohsp", 0, 0.90), run("gohsp", 1, 0.91), run("gohsp", 2, 0.95)],
             ("main", "torch_pruning", 0.8): [run("torch_pruning", 0, 0.89), run("torch_pruning", 1, 0.89)],
             ("mid", "gohsp", 0.8): [run("gohsp", 0, 0.92)],
             ("mid", "torch_pruning", 0.8): [run("torch_pruning", 0, 0.92)],
             ("high", "gohsp", 0.9): [run("gohsp", 0, 0.88, 0.9), run("gohsp", 1, 0.88, 0.9)],
             ("high", "torch_pruning", 0.9): [run("torch_pruning", 0, 0.87, 0.9), run("torch_pruning", 1, 0.87, 0.9)],
             ("main", "gohsp+kd", 0.8): [run("gohsp+kd", 0, 0.93), run("gohsp+kd", 1, 0.93)],
             ("main", "torch_pruning+kd", 0.8): [run("torch_pruning+kd", 0, 0.90), run("torch_pruning+kd", 1, 0.91)],
             ("main", "gohsp_paper", 0.8): [run("gohsp_paper", 0, 0.99), run("gohsp_paper", 1, 0.99)]}  # fmt: skip
    # pairs: +1 and +2 (main, seeds 0 and 1; seed 2 has no partner) and 0 (mid): mean +1, stdev 1, error 1/sqrt(3);
    # a budget beyond the goals' (90%) is paired the same way; distillation against distillation (+3, +2); the
    # paper's GOHSP is another method, not a column of gohsp
    assert tables.paired(found) == [
        "- s, 80%, every pass, paired by seed: GOHSP - Torch-Pruning +1.00 ± 0.58 points (mean ± standard error "
        "of 3 pairs).",
        "- s, 90%, every pass, paired by seed: GOHSP - Torch-Pruning +1.00 ± 0.00 points (mean ± standard error "
        "of 2 pairs).",
        "- s, 80%, every pass, paired by seed: GOHSP+KD - Torch-Pruning+KD +2.50 ± 0.50 points (mean ± standard "
        "error of 2 pairs).",
    ]


def test_weight_averaging_column_averages_the_fine_tuning_stage_only():
    """The benchmark's `+ema` column: an exponential moving average with a warm-up of the decay, copied into the
    model at the end of the fine-tuning stage, and nothing in a GOHSPTrainer's other stages."""
    accuracy = import_benchmark("accuracy")
    model = torch.nn.Linear(2, 1, bias=False)
    model.weight.data.fill_(0.0)
    trainer = type("FakeTrainer", (), {"model": model, "stage": "pruning"})()
    averaging = accuracy.WeightAveraging(trainer, decay=0.5)
    averaging.on_train_begin(None, None, None)
    model.weight.data.fill_(8.0)
    averaging.on_step_end(None, None, None)
    averaging.on_train_end(None, None, None)
    assert torch.equal(model.weight.data, torch.full((1, 2), 8.0))  # the pruning stage: untouched

    trainer.stage = "finetune"
    averaging.on_train_begin(None, None, None)  # average = 8
    expected = 8.0
    for step, value in enumerate((0.0, 4.0, 2.0), start=1):
        model.weight.data.fill_(value)
        averaging.on_step_end(None, None, None)
        decay = min(0.5, (1 + step) / (10 + step))  # 2/11, then 0.5
        expected = decay * expected + (1 - decay) * value
    assert torch.equal(model.weight.data, torch.full((1, 2), 2.0))  # the live weights until the stage ends
    averaging.on_train_end(None, None, None)
    assert torch.allclose(model.weight.data, torch.full((1, 2), expected))
    assert abs(expected - 2.0) > 0.1  # the average is not the last weights


def test_ablation_tables_show_the_budgets_the_ablations_ran_at():
    """The goals' 60/80% columns on the passes that ran there; a 90% column alone on a pass that ran only 90%."""
    tables = import_benchmark("accuracy_tables")

    def run(seed, accuracy):
        return {"method": "gohsp", "seed": seed, "accuracy": accuracy, "accuracy_before_hard_prune": 0.5,
                "accuracy_after_hard_prune": 0.5}  # fmt: skip

    results = {"high-mid-gohsp-s90-seed0": run(0, 0.88), "high-mid-ablation-x=1-s90-seed0": run(0, 0.89),
               "gohsp-s80-seed0": run(0, 0.90), "ablation-x=1-s80-seed0": run(0, 0.88)}  # fmt: skip
    high = tables.ablation_table(results, "high-mid-")
    assert high[0] == "| gohsp with | 90%: accuracy (seeds) | vs default | before / after hard prune |"
    assert high[2] == "| x=1 | 89.00 | +1.00 | 50.00 / 50.00 |"
    main = tables.ablation_table(results)
    assert main[0].startswith("| gohsp with | 60%: accuracy (seeds) |") and "80%" in main[0] and "90%" not in main[0]
    assert main[2] == "| x=1 | - | - | - | 88.00 | -2.00 | 50.00 / 50.00 |"


def test_pooled_margins_measure_each_tool_from_its_own_folders_dense_control(tmp_path):
    """Pooled over dense models, each run is measured from the dense control of its own folder (same shape, same
    extra epochs); runs whose folder has no such control are left out of that part, and the line says how many."""
    tables = import_benchmark("accuracy_tables")

    def write(folder, name, method, accuracy, seed=0, epochs=3):
        folder.mkdir(exist_ok=True)
        r = {
            "method": method,
            "sparsity": 0.6,
            "seed": seed,
            "accuracy": accuracy,
            "shape": "s",
            "extra_epochs": epochs,
        }
        (folder / f"{name}.json").write_text(json.dumps(r))

    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "control", "control", 0.90)
    write(a, "long-control", "control", 0.50, epochs=10)  # another budget's control: not this one's
    write(a, "gohsp-s60-seed0", "gohsp", 0.89)
    write(a, "torch_pruning-s60-seed0", "torch_pruning", 0.87)
    write(b, "gohsp-s60-seed1", "gohsp", 0.85, seed=1)
    write(b, "torch_pruning-s60-seed1", "torch_pruning", 0.85, seed=1)
    assert tables.pooled([a, b]) == [
        "- s, +3 epochs, 60%: GOHSP 87.00 (n=2) - Torch-Pruning 86.00 (n=2) = +1.00 points; against their dense "
        "control trained as long (the 1 and 1 runs with one): GOHSP -1.00, Torch-Pruning -3.00"
    ]
    assert tables.pooled([b]) == ["- s, +3 epochs, 60%: GOHSP 85.00 (n=1) - Torch-Pruning 85.00 (n=1) = +0.00 points"]
