from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="gohsp_hf",
    version="0.1.0",
    description="GOHSP heterogeneous structured pruning for Hugging Face ViT/DeiT models",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["gohsp_hf", "gohsp_hf.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Install torch first (`pip install torch==2.14.1 torchvision==0.29.1`, both on this machine's disk) so pip
        # does not download another build.
        "torch>=2.4",
        "transformers>=5,<6",
        "accelerate>=1.0",
        "datasets>=3.0",
        "evaluate>=0.4",
        "peft>=0.14",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "pillow",
        "numpy",
        "matplotlib",  # the structure plot in every saved model folder
    ],
    extras_require={
        "onnx": ["onnx", "onnxscript", "onnxruntime"],
        # examples/run_gohsp.py: training/evaluation transforms, RandAugment, MixUp/CutMix (torchvision.transforms.v2)
        "examples": ["torchvision>=0.16"],
        "dev": [
            "torchvision>=0.16",
            "pytest>=8",
            "pytest-xdist",  # `pytest -n 2`: the README's test command runs the suite on two workers
            "ruff",
            "scikit-learn",
            "tensorboard",
            "nbformat",
            "nbclient",
            "ipykernel",
            "psutil",
            "onnx",
            "onnxscript",
            "onnxruntime",
            "torch-pruning==1.6.1",  # the peer tool in benchmarks/accuracy.py
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
