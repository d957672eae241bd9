"""ONNX export of the pruned model, checked against onnxruntime."""

import warnings

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import make_model, uneven_structure

from gohsp_hf import export_pruned_model
from gohsp_hf.onnx_export import export_onnx


@pytest.mark.parametrize("variant, hidden", [("vit", False), ("deit_with_teacher", False), ("deit", True)])
def test_onnx_logits_equal_pytorch(variant, hidden, tmp_path):
    dense = make_model(variant)
    pruned = export_pruned_model(dense, uneven_structure(dense, hidden=hidden)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_onnx(pruned, tmp_path / "model.onnx")
    assert not [w for w in caught if "training mode" in str(w.message)]  # the exported graph is the eval one
    assert result["max_abs_diff"] < 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(5))  # another batch size
    (logits,) = session.run(["logits"], {"pixel_values": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, pruned(x).logits.numpy(), atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left
