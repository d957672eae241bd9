"""Convert Debian's Fashion-MNIST idx files into a local Hugging Face dataset folder (parquet).

    apt-get install -y dataset-fashion-mnist
    python examples/prepare_fashion_mnist.py --output_dir data/fashion_mnist

The folder then loads with `datasets.load_dataset("data/fashion_mnist")` (splits `train` and `test`, columns
`image` and `label` with the class names), as a Hub dataset would, and `run_gohsp.py --dataset_name` takes it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip) as a numpy array: magic, dims, then unsigned bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def convert(source: Path, output_dir: Path) -> None:
    if not (source / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(
            f"Fashion-MNIST idx files not found in {source}. Install them with "
            "`apt-get install -y dataset-fashion-mnist`, or pass --source_dir."
        )
    from datasets import ClassLabel, Dataset, Features, Image  # here: `read_idx` alone needs only numpy

    features = Features({"image": Image(), "label": ClassLabel(names=CLASSES)})
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        for split, prefix in SPLITS.items():
            images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
            labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
            dataset = Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)
            dataset.to_parquet(str(staging / f"{split}-00000-of-00001.parquet"))
            print(f"{split}: {len(dataset)} images")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source_dir", type=Path, default=SOURCE)
    parser.add_argument("--output_dir", type=Path, default=Path("data/fashion_mnist"))
    args = parser.parse_args()
    convert(args.source_dir, args.output_dir)
    print(f"Saved to {args.output_dir}")


if __name__ == "__main__":
    main()
