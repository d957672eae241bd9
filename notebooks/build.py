"""Write the notebooks from the cells below and execute them, so the committed files carry real outputs.

    python notebooks/build.py            # rewrites notebooks/*.ipynb with fresh outputs (about a minute)

Run it after every change to the package: each notebook records a hash of the package's source, and a test fails
when the committed outputs were made from other code. The runs write their models in outputs/notebooks/ (ignored), never into notebooks/.

Both notebooks run offline on real data (scikit-learn's bundled digits) with a tiny ViT.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here runs offline
warnings.filterwarnings("ignore", message="IProgress not found")  # text progress bars are fine here

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage
from sklearn.datasets import load_digits
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification, ViTImageProcessorPil

import gohsp_hf

torch.manual_seed(0)
digits = load_digits()  # 1,797 real 8x8 handwritten digits, shipped with scikit-learn
images = [PILImage.fromarray((x * 16).clip(0, 255).astype("uint8")) for x in digits.images]
features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
data = Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)
data = data.train_test_split(test_size=300, seed=0)
processor = ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)

def transform(batch):
    out = processor([image.convert("RGB") for image in batch["image"]], return_tensors="pt")
    out["labels"] = batch["label"]
    return out

train, test = data["train"].with_transform(transform), data["test"].with_transform(transform)

def collate(examples):
    return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.tensor([e["labels"] for e in examples])}

def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

config = ViTConfig(image_size=16, patch_size=4, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                   intermediate_size=96, num_labels=10, id2label={i: str(i) for i in range(10)},
                   label2id={str(i): i for i in range(10)})
dense = ViTForImageClassification(config)
quiet = dict(use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, remove_unused_columns=False, seed=0)
Trainer(model=dense, args=TrainingArguments("dense", num_train_epochs=10, learning_rate=3e-3, warmup_steps=20,
                                            per_device_train_batch_size=32, logging_strategy="no", **quiet),
        train_dataset=train, data_collator=collate).train()
print(f"dense ViT: {gohsp_hf.count_parameters(dense):,} parameters")
"""

QUICKSTART = [
    (
        "markdown",
        """\
# gohsp_hf quickstart

Prune a Vision Transformer with GOHSP and get back a smaller model that loads with
`AutoModelForImageClassification` and works in `pipeline`. Everything runs offline on a laptop CPU in about a
minute: the data are scikit-learn's bundled handwritten digits, the model a tiny ViT trained here first.""",
    ),
    ("markdown", "## 1. Real data and a small dense ViT"),
    ("code", SETUP),
    (
        "markdown",
        """\
## 2. Rank heads, allocate the budget, hard prune, fine-tune

`GOHSPTrainer` is a `transformers.Trainer`. `train()` ranks the heads of every block with a Markov chain on
their attention-similarity graph, scores every head, q/k and v dimension, MLP neuron and residual channel on
calibration batches (empirical Fisher), spends the parameter budget where it costs the least (rescored in
10 steps), reaches that structure gradually while training (masks at a sparsity rising on a cubic schedule,
re-allocated as the model learns), removes those structures for real, fine-tunes, and saves the pruned model.
`soft_pruning="admm"` trains toward the structure with the paper's ADMM penalty instead (`look_inside.ipynb`
shows it).

Fine-tuning here uses DeiT's batch mixing: MixUp or CutMix on every training batch (`train_batch_transform`,
soft labels through the loss) and label smoothing 0.1. The CLI's `--recipe deit` sets these together with
RandAugment, random erasing and weight decay; accuracy is always measured on unmixed test images.""",
    ),
    (
        "code",
        """\
from torchvision.transforms import v2

mix = v2.RandomChoice([v2.MixUp(alpha=0.8, num_classes=10), v2.CutMix(alpha=1.0, num_classes=10)])
# round_to=1: this toy model is too small for sizes in multiples of 8 (the default, for real models)
args = gohsp_hf.GOHSPConfig("digits-gohsp-50", target_sparsity=0.5, round_to=1, admm_max_steps=300, finetune_max_steps=100,
                            learning_rate=3e-3, per_device_train_batch_size=32, label_smoothing_factor=0.1,
                            ranking_samples=256, importance_samples=256, logging_steps=50,
                            overwrite_output_dir=True, **quiet)
trainer = gohsp_hf.GOHSPTrainer(model=dense, args=args, train_dataset=train, eval_dataset=test,
                                data_collator=collate, processing_class=processor, compute_metrics=accuracy,
                                train_batch_transform=mix)
trainer.train();  # the last lines of the log are the dense/pruned summary""",
    ),
    ("markdown", "## 3. Reload it as an ordinary Auto model, and predict with `pipeline`"),
    (
        "code",
        """\
from transformers import AutoModelForImageClassification, pipeline

pruned = AutoModelForImageClassification.from_pretrained("digits-gohsp-50")
print(type(pruned).__name__, "- heads per block:", pruned.config.num_attention_heads,
      "- MLP widths:", pruned.config.intermediate_size)
classify = pipeline("image-classification", model="digits-gohsp-50")
image = data["test"][0]["image"]
print("true label:", data["test"][0]["label"], "- predictions:", classify(image, top_k=3))""",
    ),
    (
        "markdown",
        """\
On a machine without gohsp_hf, pass `trust_remote_code=True`: the folder carries the model code
(`modeling_gohsp_vit.py`), its `README.md` model card and a plot of the structure.""",
    ),
    (
        "code",
        """\
sorted(p.name for p in __import__("pathlib").Path("digits-gohsp-50").iterdir() if p.is_file())""",
    ),
]

LOOK_INSIDE = [
    (
        "markdown",
        """\
# Look inside GOHSP

The head graph and its scores, the Markov chain's convergence, the per-block structure, and the ADMM
residual over training, all from one small offline run.""",
    ),
    ("code", SETUP),
    (
        "markdown",
        """\
## The head graph of each block, and the stationary distribution

Edge weights are the mean cosine similarity of two heads' attention maps over calibration images. The
stationary distribution pi of a damped Markov chain on that graph scores each head (each block's row sums
to 1).""",
    ),
    (
        "code",
        """\
import matplotlib.pyplot as plt

calibration = torch.utils.data.DataLoader(train, batch_size=64, collate_fn=collate)
ranking = gohsp_hf.rank_heads(dense, calibration, head_sparsity=0.25, num_samples=256, progress=False)
figure, axes = plt.subplots(1, 4, figsize=(15, 3.2))
for layer in range(3):
    image = axes[layer].imshow(ranking.graphs[layer], cmap="viridis")
    axes[layer].set_title(f"block {layer}: head graph W")
    axes[layer].set_xlabel("head")
    axes[layer].set_ylabel("head")
    figure.colorbar(image, ax=axes[layer], fraction=0.046)
image = axes[3].imshow(ranking.scores, cmap="magma")
axes[3].set_title("pi (head scores)")
axes[3].set_xlabel("head")
axes[3].set_ylabel("block")
for (layer, head), kept in np.ndenumerate(ranking.mask.numpy()):
    axes[3].text(head, layer, "" if kept else "x", ha="center", va="center", color="cyan")
figure.colorbar(image, ax=axes[3], fraction=0.046)
figure.tight_layout()
print("masked heads (x):", (~ranking.mask).nonzero().tolist())""",
    ),
    ("markdown", "## Power iteration converges geometrically"),
    (
        "code",
        """\
for layer, residuals in enumerate(ranking.residuals):
    plt.semilogy(range(1, len(residuals) + 1), residuals, marker=".", label=f"block {layer}")
plt.xlabel("iteration")
plt.ylabel("L1 change of pi")
plt.legend()
plt.title("Markov chain convergence")
print("iterations per block:", ranking.iterations)""",
    ),
    (
        "markdown",
        """\
## ADMM, then the per-block structure it settled on

By default GOHSP reaches the structure with masks on a gradual schedule (that measured best at equal epochs);
`soft_pruning="admm"`
first trains toward the structure with the paper's ADMM penalty, re-deciding the structure at each of
`admm_updates` updates while rho grows to `rho_max`.""",
    ),
    (
        "code",
        """\
args = gohsp_hf.GOHSPConfig("digits-look-inside", target_sparsity=0.5, soft_pruning="admm", round_to=1, admm_max_steps=300,
                            finetune_max_steps=60, learning_rate=3e-3, per_device_train_batch_size=32,
                            ranking_samples=256, logging_steps=10, overwrite_output_dir=True, **quiet)
trainer = gohsp_hf.GOHSPTrainer(model=dense, args=args, train_dataset=train, eval_dataset=test,
                                data_collator=collate, processing_class=processor, compute_metrics=accuracy)
trainer.train()
logs = [log for log in trainer.results["log_history"]["admm"] if "admm_residual" in log]
figure, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot([log["step"] for log in logs], [log["admm_residual"] for log in logs], marker="o")
axes[0].set_xlabel("step")
axes[0].set_ylabel("||W - Z|| / ||W||")
axes[0].set_title("ADMM primal residual")
axes[1].plot([log["step"] for log in logs], [log["admm_rho"] for log in logs], marker="o", color="C1")
axes[1].set_xlabel("step")
axes[1].set_ylabel("rho")
axes[1].set_title("penalty coefficient")
figure.tight_layout()""",
    ),
    (
        "code",
        """\
from IPython.display import Image as ShowImage

print(trainer.structure.sizes())
ShowImage(filename="digits-look-inside/structure.png")""",
    ),
]


def source_hash() -> str:
    """sha256 of the package's source and of this file: the outputs of a notebook built from other code are stale."""
    digest = hashlib.sha256()
    for path in sorted([*(HERE.parent / "gohsp_hf").glob("*.py"), Path(__file__).resolve()]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(name: str, cells: list[tuple[str, str]], execute: bool = True) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["gohsp_hf"] = {"source_sha256": source_hash()}  # tests/test_notebooks.py compares it
    notebook.cells = [
        nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        for kind, text in cells
    ]
    if execute:
        workdir = HERE.parent / "outputs" / "notebooks"
        workdir.mkdir(parents=True, exist_ok=True)
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        ).execute()
    path = HERE / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


NOTEBOOKS = {"quickstart": QUICKSTART, "look_inside": LOOK_INSIDE}

if __name__ == "__main__":
    for name in sys.argv[1:] or NOTEBOOKS:
        print("wrote", build(name, NOTEBOOKS[name]))
