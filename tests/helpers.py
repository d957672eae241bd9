"""Running Python in a fresh process, optionally one where gohsp_hf cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Prepended to a script to hide gohsp_hf, as on a machine where it is not installed: `import gohsp_hf` raises
# ImportError, the clone's own folder leaves sys.path and the editable install's finder leaves sys.meta_path.
# Only those: a virtual environment inside the clone (`.venv`) or beside it (`<clone>-venv`) keeps its
# site-packages, so transformers and torch still import.
BLOCK_GOHSP = """
import os
import sys
sys.path = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != {repo!r}]
sys.meta_path = [f for f in sys.meta_path if "gohsp_hf" not in getattr(f, "__module__", "")]
sys.modules["gohsp_hf"] = None  # `import gohsp_hf` now raises ImportError
"""

REPO = str(Path(__file__).resolve().parents[1])

# `accelerate launch`, through the running interpreter: a venv's `bin/` need not be on PATH (issue #7).
# Each pytest-xdist worker (`pytest -n 2`) rendezvous on a port of its own, so two launches at once never collide.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
ACCELERATE_LAUNCH = (sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(29500 + _WORKER))


# Defines `emit(obj)`, which hands a JSON-able result back to the test.
EMIT = """
def emit(obj):
    import json
    with open("result.json", "w") as f:
        json.dump(obj, f)
"""


def run_python(script: str, tmp_path: Path, without_gohsp: bool = False, timeout: int = 300):
    """Run `script` in a new interpreter (isolated mode, cwd `tmp_path`); return what it passed to `emit`."""
    code = EMIT + textwrap.dedent(script)
    if without_gohsp:
        code = BLOCK_GOHSP.format(repo=REPO) + code
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return json.loads((tmp_path / "result.json").read_text())


class DigitsDataset:
    """scikit-learn's bundled 8x8 digits (real, offline), upsampled to RGB `size` x `size` tensors."""

    def __init__(self, start: int = 0, stop: int | None = None, size: int = 32):
        import torch
        from sklearn.datasets import load_digits

        images, labels = load_digits(return_X_y=True)
        x = torch.tensor(images[start:stop], dtype=torch.float32).view(-1, 1, 8, 8) / 8 - 1
        self.pixel_values = torch.nn.functional.interpolate(x, size=size).repeat(1, 3, 1, 1)
        self.labels = labels[start:stop].tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


def accuracy(prediction):
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((logits.argmax(-1) == prediction.label_ids).mean())}
