"""Atomic, resumable training checkpoints.

A checkpoint is one ``torch.save`` file holding everything a stage needs to continue exactly where it stopped:
model and optimizer state dicts, EMA weights, the step, the RNG states and the config it was started with. It is
written to a temporary file and moved into place with ``os.replace``, so a kill at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one rename: a kill
    leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # some writers create 0600 files; a checkpoint is as readable as any file here
    with open(tmp, "rb") as f:  # make the bytes durable before the rename makes them visible
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


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
    """The checkpoint at ``path``, or None if there is none yet (a fresh run)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a checkpoint we wrote atomically should never be torn; say which file is bad
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}; delete it to start over") from exc


def check_same_config(saved: dict[str, Any], current: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse to resume a run whose shape-defining settings changed (the weights would not fit)."""
    diff = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
    if diff:
        raise ValueError(
            f"the checkpoint was made with different settings {diff} (saved, now); "
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
) -> int | None:
    """Load a checkpoint written by :func:`save_state` into ``parts`` and the RNGs; its step, or None if absent."""
    ckpt = load_checkpoint(path, map_location)
    if ckpt is None:
        return None
    check_same_config(ckpt["config"], config, same_keys)
    for name, part in parts.items():
        part.load_state_dict(ckpt[name])
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


def export_step(folder: str | Path) -> int:
    """The training step an exported folder was written at (its ``result.json``), 0 when there is none."""
    result = Path(folder) / "result.json"
    return json.loads(result.read_text()).get("step", 0) if result.exists() else 0
