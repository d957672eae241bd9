"""What a pruned model folder tells people: a summary table, a plot of the per-block structure, a model card."""

from __future__ import annotations

import io
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .methods import PRUNING_METHODS
from .structure import PrunedStructure

CITATION = """@inproceedings{yin2023gohsp,
  title     = {A Unified Framework of Graph and Optimization-based Heterogeneous Structured Pruning for Vision Transformer},
  author    = {Yin, Miao and Uzkent, Burak and Shen, Yilin and Jin, Hongxia and Yuan, Bo},
  booktitle = {AAAI},
  year      = {2023}
}"""


def summary_table(results: dict) -> str:
    """Dense against pruned: accuracy, parameters, FLOPs, sparsity and the measured speedup, as aligned text."""
    dense, pruned = results["dense"], results["pruned"]
    rows = [("", "dense", "pruned")]
    if "accuracy" in dense and "accuracy" in pruned:
        rows.append(("accuracy", f"{dense['accuracy']:.4f}", f"{pruned['accuracy']:.4f}"))
    rows.append(("parameters", f"{dense['params']:,}", f"{pruned['params']:,}"))
    rows.append(("GFLOPs / image", f"{dense['flops'] / 1e9:.4f}", f"{pruned['flops'] / 1e9:.4f}"))
    rows.append(("sparsity", "0", f"{results['achieved_sparsity']:.4f} (target {results['target_sparsity']})"))
    if "speed" in results:
        speed = results["speed"]
        rows.append((f"ms / batch of {speed['batch_size']}", f"{speed['dense_ms']:.2f}", speed_note(speed)))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)).rstrip() for row in rows)


def speed_note(speed: dict) -> str:
    """The pruned model's time with the speedup read against the FLOPs ratio, or, when it is not faster, why."""
    flops = speed.get("flops_ratio")
    fewer = f"{flops:.2f}x fewer FLOPs" if flops else "fewer FLOPs"
    if speed["speedup"] >= 1.05:
        return f"{speed['pruned_ms']:.2f} ({speed['speedup']:.2f}x faster; {fewer})"
    return (
        f"{speed['pruned_ms']:.2f} (not faster: {fewer}, but a model this small spends its time on per-operator "
        f"overhead on this {speed['device']} device)"
    )


def structure_plot(structure: PrunedStructure) -> bytes:
    """PNG bar charts of the kept heads, q/k and v sizes and MLP width of every block, against the dense sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, sizes = structure.dims, structure.sizes()
    blocks = range(len(sizes))
    panels = [
        ("heads", "kept heads", d.num_heads),
        ("qk_dim", "q/k size per head", d.head_dim),
        ("v_dim", "v size per head", d.head_dim),
        ("mlp", "MLP width", d.intermediate_size),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for axis, (key, title, dense) in zip(axes, panels):
        axis.bar(blocks, [dense] * len(sizes), color="#dddddd", label="dense")
        axis.bar(blocks, [s[key] for s in sizes], color="#3b75af", label="kept")
        axis.set_title(title)
        axis.set_xlabel("block")
        axis.set_xticks(list(blocks))
    axes[0].legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def model_card(
    results: dict, structure: PrunedStructure, base_model: str | None, dataset: str | None, command: str
) -> str:
    """The README.md of a pruned model folder: Hub metadata, results, structure, how to load, citation."""
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["gohsp", "pruning", "structured-pruning", "vision-transformer"],
        base_model=base_model if _looks_like_hub_id(base_model) else None,
        datasets=[dataset] if _looks_like_hub_id(dataset) else None,
        metrics=["accuracy"],
    )
    sizes = structure.sizes()
    d = structure.dims
    rows = "\n".join(
        f"| {i} | {s['heads']} / {d.num_heads} | {s['qk_dim']} / {d.head_dim} | {s['v_dim']} / {d.head_dim} | "
        f"{s['mlp']} / {d.intermediate_size} |"
        for i, s in enumerate(sizes)
    )
    source = (base_model if _looks_like_hub_id(base_model) else Path(base_model).name) if base_model else "a ViT/DeiT"
    content = f"""---
{data.to_yaml()}
---

# {source}, pruned with GOHSP ({results["method"]})

This model is `{source}` with {results["achieved_sparsity"]:.1%} of its parameters removed (target
{results["target_sparsity"]:.0%}) with gohsp_hf, using {_method_name(results["method"])}:
whole heads, query/key and value dimensions and MLP neurons were removed, differently in every block.
{f"Data: `{dataset}`." if dataset else ""}

## Dense against pruned

```
{summary_table(results)}
```

## Structure

| block | heads | q/k size | v size | MLP width |
|---|---|---|---|---|
{rows}

![Per-block structure](structure.png)

## How to load

The pruned architecture is custom code (`modeling_gohsp_vit.py`, next to the weights; it imports only torch
and transformers), so pass `trust_remote_code=True`, and pin a `revision` you have read:

```python
from transformers import AutoModelForImageClassification, pipeline

model = AutoModelForImageClassification.from_pretrained("<this repo>", trust_remote_code=True, revision="<commit>")
classifier = pipeline("image-classification", model="<this repo>", trust_remote_code=True, revision="<commit>")
```

With `import gohsp_hf` installed, `trust_remote_code` is not needed.

## How it was made

```bash
{command}
```

`gohsp_results.json` holds the full record: accuracy before and after, per-stage wall time, head scores, the
ADMM log. `gohsp_structure.json` holds the indices of the dense model's heads, dimensions and neurons that were
kept.

## Citation

```bibtex
{CITATION}
```
"""
    return str(ModelCard(content))


def _method_name(method: str) -> str:
    """The registered method's own description (`PruningMethod.description`), or its name."""
    return PRUNING_METHODS[method].description if method in PRUNING_METHODS else method


def _looks_like_hub_id(name: str | None) -> bool:
    """`org/name` that is not a local path."""
    return bool(name) and name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/"))
