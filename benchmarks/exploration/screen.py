"""Scratch screening: one-shot structure choices on the cached 128x6 dense model, then a short fine-tune."""
import json, sys, time, copy, argparse, math, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests"), str(ROOT / "examples")]
import torch
from transformers import Trainer, TrainingArguments, ViTForImageClassification, TrainerCallback
from accuracy import FashionMNIST, PASSES, Benchmark
from helpers import accuracy
from gohsp_hf import BudgetSolver, apply_masks, count_parameters
from gohsp_hf.allocation import Allocation
from gohsp_hf.importance import data_importance, norm_importance
from gohsp_hf.groups import Layout, prunable_parameters
from gohsp_hf.admm import group_scores
from gohsp_hf.baselines import magnitude_head_mask
torch.set_num_threads(2)

p = argparse.ArgumentParser()
p.add_argument("--sparsity", type=float, default=0.6)
p.add_argument("--importance", default="taylor")
p.add_argument("--heads", default="joint")  # joint | half
p.add_argument("--hidden", action="store_true")
p.add_argument("--floor", type=float, default=0.0)
p.add_argument("--steps", type=int, default=1)  # rescoring steps
p.add_argument("--ft_epochs", type=float, default=1.0)
p.add_argument("--samples", type=int, default=640)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--tag", default="")
p.add_argument("--hidden_frac", type=float, default=None)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--tp", action="store_true")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

FULL = PASSES["main"]
_data = (FashionMNIST("train"), FashionMNIST("test"))
bench = Benchmark(FULL, Path(__file__).parent / "pilots", ROOT / "benchmarks" / ".cache", _data)
dense_path = bench.dense_path()
model = ViTForImageClassification.from_pretrained(dense_path)
train, test = bench.train, bench.test

@torch.no_grad()
def evaluate(m):
    m.eval(); loader = torch.utils.data.DataLoader(test, batch_size=500)
    return sum(int((m(pixel_values=b["pixel_values"]).logits.argmax(-1) == b["labels"]).sum()) for b in loader) / len(test)

t0 = time.time()
if a.tp:
    from accuracy import tp_prune, tp_structure
    target = (1 - a.sparsity) * count_parameters(model)
    lo, hi, sizes = 0.0, 0.95, {}
    for _ in range(10):
        r = (lo + hi) / 2
        sizes[r] = count_parameters(tp_prune(copy.deepcopy(model), r, train, 10, a.seed))
        lo, hi = (r, hi) if sizes[r] > target else (lo, r)
    r = min(sizes, key=lambda r: abs(sizes[r] - target))
    m = tp_prune(copy.deepcopy(model), r, train, 10, a.seed)
    one_shot = evaluate(m)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(tmp, num_train_epochs=a.ft_epochs, learning_rate=a.lr, warmup_steps=50, per_device_train_batch_size=128,
            per_device_eval_batch_size=500, weight_decay=0.05, label_smoothing_factor=0.1, lr_scheduler_type="cosine", seed=a.seed,
            use_cpu=True, report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=1000)
        Trainer(model=m, args=args, train_dataset=train).train()
    out = dict(vars(a), one_shot=one_shot, ft=evaluate(m), sparsity_achieved=1 - count_parameters(m) / count_parameters(model),
               hidden_size=m.vit.layers[0].attention.q_proj.in_features, sizes=[[x["heads"], x["head_dim"], x["head_dim"], x["mlp"]] for x in tp_structure(m)], minutes=(time.time() - t0) / 60)
    print(json.dumps(out)); open(str(Path(__file__).parent / "screen.jsonl"), "a").write(json.dumps(out) + "\n")
    sys.exit()
solver = BudgetSolver.from_model(model, a.sparsity, round_to=1, hidden=a.hidden)
layout = solver.layout
def calib(offset=0):
    g = torch.Generator().manual_seed(1234 + offset)
    idx = torch.randperm(len(train), generator=g)[: a.samples]
    sub = torch.utils.data.Subset(train, idx.tolist())
    return torch.utils.data.DataLoader(sub, batch_size=a.bs)
structure = None
for step in range(1, a.steps + 1):
    target = a.sparsity * step / a.steps
    s = BudgetSolver.from_model(model, target, round_to=1, hidden=a.hidden)
    masked = model if structure is None else apply_masks(copy.deepcopy(model), structure)
    if a.heads == "half":
        mask = magnitude_head_mask(model, round(0.5 * target * 24), "per_block")
        if a.importance == "norm":
            w = {n: p.detach() for n, p in prunable_parameters(model).items()}
            structure = s.solve(group_scores(w, model, mask), mask)
            continue
    else:
        mask = None
    imp = norm_importance({n: p for n, p in s.layout.parameters(masked).items()}, s.layout) if a.importance == "norm" else data_importance(masked, calib(step), s.layout, a.importance)
    extra = {} if a.hidden_frac is None else {"hidden_sparsity": a.hidden_frac * step / a.steps}
    structure = Allocation(s, imp, head_mask=mask, block_floor=a.floor, **extra).run()
masked = apply_masks(copy.deepcopy(model), structure)
one_shot = evaluate(masked)
sparsity = solver.sparsity(structure)
masks = structure.parameter_masks(masked)
class Keep(TrainerCallback):
    def on_optimizer_step(self, args, state, control, model=None, **kw):
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, m in masks.items(): params[n].mul_(m)
with tempfile.TemporaryDirectory() as tmp:
    args = TrainingArguments(tmp, num_train_epochs=a.ft_epochs, learning_rate=a.lr, warmup_steps=50, per_device_train_batch_size=128,
        per_device_eval_batch_size=500, weight_decay=0.05, label_smoothing_factor=0.1, lr_scheduler_type="cosine", seed=a.seed,
        use_cpu=True, report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=1000)
    Trainer(model=masked, args=args, train_dataset=train, callbacks=[Keep()]).train()
ft = evaluate(masked)
sizes = structure.sizes()
out = dict(vars(a), one_shot=one_shot, ft=ft, sparsity_achieved=sparsity, hidden_size=structure.hidden_size,
           sizes=[[s["heads"], s["qk_dim"], s["v_dim"], s["mlp"]] for s in sizes], minutes=(time.time() - t0) / 60)
print(json.dumps(out)); open(str(Path(__file__).parent / "screen.jsonl"), "a").write(json.dumps(out) + "\n")
