"""Atomic, resumable training checkpoints, read without unpickling anything.

A checkpoint (``checkpoint.pt`` in a run folder) holds everything a stage needs to continue exactly where it
stopped: model and optimizer state dicts, EMA weights, the step, the RNG states and the config it was started
with. It is a state file of :mod:`world_model.safe_files`: one safetensors file whose tensors are the weights,
optimizer moments and RNG states (numpy's as uint8 bytes) and whose metadata holds the rest as JSON (config, step,
the optimizer's param groups, Python's RNG state) and the file's SHA-256, checked at every load. It is written to
a temporary file and moved into place with ``os.replace``, so a kill at any moment leaves either the previous
checkpoint or the new one, never a torn file. Checkpoints of the earlier ``torch.save`` format are refused with
the command that converts them (``python -m tools.convert_legacy_checkpoint``): a pickle can run code.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_model.safe_files import (  # noqa: F401  (atomic_write is part of this module's API)
    StateFileError,
    atomic_write,
    load_state_file,
    require_keys,
    save_state_file,
)

KIND = "training-checkpoint"
WHAT = "training checkpoint"
REQUIRED = ("step", "rng", "config")


class CheckpointFormatError(StateFileError):
    """A file in a run folder is not a usable training checkpoint (the message names it and says why)."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (nested dicts / lists of tensors, arrays and JSON values) as a training checkpoint."""
    return save_state_file(path, obj, KIND)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # A checkpoint loaded with map_location="cuda" carries the generator states as CUDA tensors; the setters
    # want CPU byte tensors.
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none yet (a fresh run).

    Raises :class:`CheckpointFormatError` (or :class:`~world_model.safe_files.UnsafeFileError` for a pickle)
    naming the file when it is not a training checkpoint, is corrupt or lacks the step / RNG / config."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = load_state_file(path, KIND, WHAT, map_location)
        require_keys(ckpt, REQUIRED, path, WHAT)
    except CheckpointFormatError:
        raise
    except StateFileError as exc:
        hint = "" if "delete it" in str(exc) else "; delete it (or use another --out folder) to start over"
        raise CheckpointFormatError(f"{exc}{hint}") from None
    return ckpt


def check_same_config(
    saved: dict[str, Any],
    current: dict[str, Any],
    keys: tuple[str, ...],
    path: str | os.PathLike | None = None,
    older: dict[str, Any] | None = None,
) -> None:
    """Refuse to resume a run whose shape-defining settings changed (the weights would not fit).

    ``older`` gives, for a setting added after some checkpoints were written, the value those checkpoints were
    made with (so they still resume under it)."""
    saved = {**(older or {}), **saved}
    diff = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
    if diff:
        where = f"{path}: " if path is not None else ""
        raise ValueError(
            f"{where}the checkpoint was made with different settings {diff} (saved, now); "
            "use the same settings or a new --out folder"
        )


def save_state(path: str | os.PathLike, step: int, config: dict[str, Any], parts: dict[str, Any]) -> None:
    """Checkpoint every part's ``state_dict()`` (models, optimizers, EMAs) with the step, RNG states and config."""
    atomic_save(
        {"step": step, "rng": rng_state(), "config": config, **{k: p.state_dict() for k, p in parts.items()}}, path
    )


def restore_state(
    path: str | os.PathLike,
    parts: dict[str, Any],
    config: dict[str, Any],
    same_keys: tuple[str, ...],
    map_location: str | torch.device = "cpu",
    optional: tuple[str, ...] = (),
    older: dict[str, Any] | None = None,
) -> int | None:
    """Load a checkpoint written by :func:`save_state` into ``parts`` and the RNGs; its step, or None if absent.

    Parts named in ``optional`` that the checkpoint lacks keep their fresh state (e.g. a discriminator added to a
    run that trained without one); every other part must be there. ``older`` is :func:`check_same_config`'s."""
    ckpt = load_checkpoint(path, map_location)
    if ckpt is None:
        return None
    fresh = [name for name in optional if name in parts and name not in ckpt]
    if fresh:
        print(f"{path}: the checkpoint has no {fresh}; they start fresh", file=sys.stderr)
    parts = {name: part for name, part in parts.items() if name not in fresh}
    missing = [name for name in parts if name not in ckpt]
    if missing:
        raise CheckpointFormatError(
            f"{path}: this training checkpoint has no {missing} (it holds {sorted(ckpt)}): it was written by "
            "another trainer or version; use another --out folder, or delete it to start over"
        )
    check_same_config(ckpt["config"], config, same_keys, path, older)
    for name, part in parts.items():
        try:
            part.load_state_dict(ckpt[name])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointFormatError(
                f"{path}: the checkpoint's {name!r} does not fit this run ({type(exc).__name__}: {str(exc)[:300]}); "
                "use the settings it was made with, or another --out folder"
            ) from exc
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


def export_step(folder: str | Path) -> int:
    """The training step an exported folder was written at (its ``result.json``), 0 when there is none."""
    result = Path(folder) / "result.json"
    return json.loads(result.read_text()).get("step", 0) if result.exists() else 0
