"""Saved pruned models reload as ordinary Auto models: in-process, and in a process without gohsp_hf."""

import ast
import json

import pytest
import torch
from conftest import make_model, uneven_structure
from helpers import run_python
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageClassification, ViTImageProcessor

import gohsp_hf
from gohsp_hf import PrunedStructure, apply_masks, export_pruned_model, save_pruned_model

IMAGES = 32


def saved_pruned(tmp_path, variant="deit_with_teacher", hidden=False):
    dense = make_model(variant)
    structure = uneven_structure(dense, hidden=hidden)
    pruned = export_pruned_model(apply_masks(dense, structure), structure, provenance={"method": "hand-made"})
    processor = ViTImageProcessor(size={"height": IMAGES, "width": IMAGES})
    path = save_pruned_model(pruned, tmp_path / "pruned", image_processor=processor, structure=structure)
    return pruned, structure, path


def test_saved_folder_contents(tmp_path):
    pruned, structure, path = saved_pruned(tmp_path)
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "gohsp_structure.json"} <= files
    assert {"configuration_gohsp_vit.py", "modeling_gohsp_vit.py"} <= files
    assert not any(name.endswith(".bin") for name in files)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gohsp_vit" and config["variant"] == "deit_with_teacher"
    assert config["auto_map"]["AutoModelForImageClassification"].startswith("modeling_gohsp_vit.")
    assert config["gohsp_provenance"]["method"] == "hand-made"
    weights = load_file(path / "model.safetensors")
    assert weights["vit.layers.0.mlp.fc1.weight"].shape == (37, 48)
    assert PrunedStructure.load(path) == structure
    # The shipped files import only torch, transformers and each other.
    for name in ("configuration_gohsp_vit.py", "modeling_gohsp_vit.py"):
        tree = ast.parse((path / name).read_text())
        imported = {n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert {m.split(".")[0] for m in imported} <= {"torch", "transformers", "collections", "dataclasses"}


def test_reload_in_process_without_trust_remote_code(tmp_path, pixel_values):
    pruned, _, path = saved_pruned(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(path).eval()
    assert isinstance(reloaded, gohsp_hf.GOHSPViTForImageClassification)
    assert isinstance(AutoConfig.from_pretrained(path), gohsp_hf.GOHSPViTConfig)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, pruned.eval()(pixel_values).logits, atol=0, rtol=0)


@pytest.mark.parametrize("hidden", [False, True])
def test_reload_in_a_process_that_cannot_import_gohsp_hf(hidden, tmp_path, pixel_values):
    pruned, _, path = saved_pruned(tmp_path, hidden=hidden)
    torch.save(pixel_values, tmp_path / "x.pt")
    with torch.no_grad():
        expected = pruned.eval()(pixel_values).logits
    result = run_python(
        f"""
        import torch
        try:
            import gohsp_hf
            importable = True
        except ImportError:
            importable = False
        from transformers import AutoConfig, AutoModelForImageClassification
        path = {str(path)!r}
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=True).eval()
        eager = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=True, attn_implementation="eager")
        x = torch.load("x.pt")
        with torch.no_grad():
            logits = model(x).logits
            attentions = eager.eval()(x, output_attentions=True).attentions
        torch.save(logits, "logits.pt")
        try:
            AutoModelForImageClassification.from_pretrained(path)
            refused = None
        except ValueError as error:
            refused = str(error)
        emit({{"importable": importable, "config": type(config).__name__,
                          "model": type(model).__module__ + "." + type(model).__name__,
                          "impl": model.config._attn_implementation, "heads": [a.shape[1] for a in attentions],
                          "refused": refused}})
        """,
        tmp_path,
        without_gohsp=True,
    )
    assert result["importable"] is False
    assert result["config"] == "GOHSPViTConfig"
    assert result["model"].startswith("transformers_modules.") and result["model"].endswith(
        "modeling_gohsp_vit.GOHSPViTForImageClassification"
    )
    assert result["impl"] == "sdpa" and result["heads"] == [1, 2, 3]
    assert "trust_remote_code" in result["refused"]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hidden", [False, True])
def test_pipeline_without_gohsp_hf(hidden, tmp_path):
    pruned, _, path = saved_pruned(tmp_path, variant="vit", hidden=hidden)
    image = Image.new("RGB", (50, 40), color=(120, 30, 200))
    processor = ViTImageProcessor(size={"height": IMAGES, "width": IMAGES})
    with torch.no_grad():
        probs = pruned.eval()(**processor(image, return_tensors="pt")).logits.softmax(-1)[0]
    image.save(tmp_path / "image.png")
    result = run_python(
        f"""
        from transformers import pipeline
        classify = pipeline("image-classification", model={str(path)!r}, trust_remote_code=True)
        emit(classify("image.png", top_k=5))
        """,
        tmp_path,
        without_gohsp=True,
    )
    labels = pruned.config.id2label
    expected = sorted(((labels[i], p.item()) for i, p in enumerate(probs)), key=lambda t: -t[1])
    assert [r["label"] for r in result] == [label for label, _ in expected]
    assert [r["score"] for r in result] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_resave_of_a_remote_code_model_keeps_the_code(tmp_path):
    """A model loaded with trust_remote_code and saved again must still load on a machine without gohsp_hf."""
    _, _, path = saved_pruned(tmp_path)
    result = run_python(
        f"""
        import os
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(path)!r}, trust_remote_code=True)
        model.save_pretrained("again")
        again = AutoModelForImageClassification.from_pretrained("again", trust_remote_code=True)
        emit(sorted(os.listdir("again")))
        """,
        tmp_path,
        without_gohsp=True,
    )
    assert "modeling_gohsp_vit.py" in result and "configuration_gohsp_vit.py" in result


def test_config_that_does_not_match_the_weights(tmp_path):
    _, _, path = saved_pruned(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"][0] += 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match the per-block sizes in its config.json"):
        AutoModelForImageClassification.from_pretrained(path)


def test_the_blocker_hides_gohsp_hf_and_nothing_else(tmp_path):
    """The tests above prove a folder loads without gohsp_hf only if hiding it works: a folder whose code needs
    gohsp_hf must fail under the same blocker, while torch and transformers (from any venv) still import."""
    _, _, path = saved_pruned(tmp_path)
    modeling = path / "modeling_gohsp_vit.py"
    modeling.write_text(modeling.read_text().replace("import torch\n", "import torch\nimport gohsp_hf.groups\n", 1))
    script = f"""
        import torch, transformers
        from transformers import AutoModelForImageClassification
        AutoModelForImageClassification.from_pretrained({str(path)!r}, trust_remote_code=True)
        emit("loaded")
        """
    with pytest.raises(AssertionError, match="gohsp_hf"):
        run_python(script, tmp_path, without_gohsp=True)
    assert run_python(script, tmp_path) == "loaded"  # the same folder loads where gohsp_hf is installed
