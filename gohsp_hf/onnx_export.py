"""Export a (pruned) ViT/DeiT image classifier to ONNX, and check it with onnxruntime.

    python -m gohsp_hf.onnx_export path/to/pruned_model model.onnx

Needs the `onnx` extra: `pip install -e ".[onnx]"` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from .counting import example_pixels


class _Logits(nn.Module):
    """`pixel_values -> logits`, the one output ONNX users want."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


@torch.no_grad()
def export_onnx(model: nn.Module, path: str | os.PathLike, verify: bool = True, atol: float = 1e-4) -> dict:
    """Write `model` as ONNX (input `pixel_values` with a dynamic batch size, output `logits`).

    Args:
        model: a `GOHSPViTForImageClassification` (or a dense ViT/DeiT).
        path: the `.onnx` file; written to a temporary name first, then renamed.
        verify: run the file with onnxruntime on a random batch of 3 and compare with PyTorch.
        atol: the largest logit difference accepted by `verify`.

    Returns:
        `{"path": ..., "max_abs_diff": ...}` (the difference is `None` without `verify`).
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    example = example_pixels(model, 2)
    staging = path.with_name(f".{path.name}.tmp")
    try:
        torch.onnx.export(
            _Logits(model).eval(),  # a new module trains by default; the exporter warns about the wrapper's mode
            (example,),
            str(staging),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
            dynamo=True,
            external_data=False,  # one self-contained file (models under 2 GB), so the rename moves it all
        )
        difference = _compare_with_onnxruntime(model, staging, atol) if verify else None
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
        model.train(was_training)
    return {"path": str(path), "max_abs_diff": difference}


def _compare_with_onnxruntime(model: nn.Module, path: Path, atol: float) -> float:
    import onnxruntime

    x = example_pixels(model, 3)  # seeded: the same batch on every call
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"pixel_values": x.numpy()})[0])
    difference = (got - model(pixel_values=x).logits.float()).abs().max().item()
    if difference > atol:
        raise ValueError(f"The ONNX model's logits differ from PyTorch's by {difference:.3g} (more than {atol}).")
    return difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved (pruned) model folder")
    parser.add_argument("output", help="the .onnx file to write")
    args = parser.parse_args()
    from transformers import AutoModelForImageClassification

    import gohsp_hf  # noqa: F401  (registers the pruned architecture)

    model = AutoModelForImageClassification.from_pretrained(args.model)
    result = export_onnx(model, args.output)
    print(f"Wrote {result['path']}; onnxruntime logits match PyTorch within {result['max_abs_diff']:.2e}.")


if __name__ == "__main__":
    main()
