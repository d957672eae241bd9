"""Pushing a saved pruned model folder to the Hugging Face Hub."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from huggingface_hub import create_repo, upload_folder
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .methods import stage_folders

# What a Hub user of the pruned model needs (top-level files only; stage checkpoints stay local).
HUB_PATTERNS = ("*.json", "*.safetensors", "*.py", "README.md", "*.png")


def hub_files(folder: str | os.PathLike) -> list[str]:
    """The files of a saved pruned model folder that `push_to_hub` uploads (no sub-folders, no checkpoints)."""
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in HUB_PATTERNS)
    )


def checkpoint_patterns(args) -> list[str]:
    """Stage checkpoints are uploaded only when asked for, with `--hub_strategy all_checkpoints`."""
    if args.hub_strategy != "all_checkpoints":
        return []
    return [f"{stage}/{PREFIX_CHECKPOINT_DIR}-*/*" for stage in stage_folders(args.method)]


def push_pruned_model(folder: str, args) -> str:
    """Upload the saved pruned model (weights, config, code, processor, structure, results) to the Hub.

    Args:
        folder: the saved folder (`output_dir`).
        args: the run's `GOHSPConfig` (`hub_model_id`, `hub_token`, `hub_private_repo`, `hub_revision`,
            `hub_strategy`).

    Returns the repository id. Raises a `RuntimeError` in one sentence when the upload fails; the local save is
    complete by then.
    """
    repo_id = args.hub_model_id or Path(folder).name
    try:
        repo_id = create_repo(repo_id, token=args.hub_token, private=args.hub_private_repo, exist_ok=True).repo_id
        upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            allow_patterns=hub_files(folder) + checkpoint_patterns(args),
            token=args.hub_token,
            revision=args.hub_revision,
            commit_message="Upload GOHSP-pruned model",
        )
    except Exception as error:  # network, auth and offline-mode errors share no base class in huggingface_hub
        raise RuntimeError(
            f"The pruned model is saved in {folder}, but pushing it to the Hub as {repo_id} failed "
            f"({type(error).__name__}: {error}); check the network and your token, then run "
            f"`hf upload {repo_id} {folder}`."
        ) from error
    return repo_id
