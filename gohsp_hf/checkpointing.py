"""GOHSP's own state in Trainer checkpoints, and finding the checkpoint to resume from."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

GOHSP_STATE = "gohsp_state.pt"


def save_state(folder: str | os.PathLike, state: dict) -> None:
    """Write `gohsp_state.pt` into a checkpoint folder, through a rename: a checkpoint that has it is complete."""
    folder = Path(folder)
    torch.save(state, folder / f".{GOHSP_STATE}.tmp")
    os.replace(folder / f".{GOHSP_STATE}.tmp", folder / GOHSP_STATE)


def load_state(checkpoint: str | None) -> dict | None:
    return torch.load(Path(checkpoint) / GOHSP_STATE, weights_only=False) if checkpoint else None


def find_checkpoint(output_dir: str, resume: str | bool | None, stages: tuple[str, ...]) -> str | None:
    """The checkpoint folder to resume from: the given one, or for `True`/`"last"` the newest complete one.

    `stages` are the run's stage folders, the latest stage first.

    Raises a `ValueError` that says what to do when there is none.
    """
    if not resume:
        return None
    if resume is True or resume == "last":
        for stage in stages:
            found = sorted(
                (Path(output_dir) / stage).glob(f"{PREFIX_CHECKPOINT_DIR}-*/{GOHSP_STATE}"),
                key=lambda p: int(p.parent.name.split("-")[-1]),
            )
            if found:
                return str(found[-1].parent)
        raise ValueError(
            f"No complete GOHSP checkpoint in {output_dir} (looked in {', '.join(stages)}/checkpoint-*); "
            "start the run without resume_from_checkpoint, or set save_strategy/save_steps so checkpoints are written."
        )
    if not (Path(resume) / GOHSP_STATE).exists():
        raise ValueError(
            f"{resume} is not a complete GOHSP checkpoint (it has no {GOHSP_STATE}); pass a folder "
            "output_dir/<stage>/checkpoint-N written by GOHSPTrainer, or True for the latest."
        )
    return str(resume)


def check_output_dir(args) -> None:
    """Refuse an `output_dir` that already holds files, unless `overwrite_output_dir` is set."""
    path = Path(args.output_dir)
    if path.is_dir() and any(path.iterdir()) and not args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {args.output_dir} already holds files, perhaps from a different run. Choose another "
            "output_dir, or pass --overwrite_output_dir to write into it anyway."
        )
