"""Stable-Baselines3 policies on disk without pickles: safetensors + JSON.

``PPO.save`` writes a zip whose ``data`` entry holds cloudpickled objects (spaces, schedules), and ``PPO.load``
unpickles them: a file from elsewhere could run code. This project never unpickles, so a policy folder holds

    policy.safetensors   the policy network's weights (``policy.state_dict()``)
    policy.json          what rebuilds it: the policy class name, observation and action spaces (Box), extras

each written atomically (:func:`world_model.safe_files.atomic_write`). A PPO run's training checkpoint (optimizer,
steps, RNG) is the project's training checkpoint (:mod:`distillation.training.checkpoint`), written beside it by
``agents.train_ppo``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from world_model.safe_files import atomic_write

POLICY_FILE, POLICY_META = "policy.safetensors", "policy.json"


def _box(space: spaces.Box) -> dict[str, Any]:
    if not isinstance(space, spaces.Box):
        raise TypeError(f"only Box spaces are stored, got {space}")
    d: dict[str, Any] = {"shape": list(space.shape), "dtype": str(space.dtype)}
    for name, bound in (("low", space.low), ("high", space.high)):
        # an image space's bounds are one number repeated per pixel: stored once (the JSON stays small)
        d[name] = bound.flat[0].item() if bound.size and (bound == bound.flat[0]).all() else bound.tolist()
    return d


def _unbox(d: dict[str, Any]) -> spaces.Box:
    dtype = np.dtype(d["dtype"])
    shape = tuple(d["shape"]) if "shape" in d else None  # files from before the shape was stored: full bounds
    low, high = (np.asarray(d[k], dtype) for k in ("low", "high"))
    if shape is not None:
        low, high = np.broadcast_to(low, shape).copy(), np.broadcast_to(high, shape).copy()
    return spaces.Box(low, high, dtype=dtype)


def save_policy(policy, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write an SB3 ``BasePolicy`` (e.g. ``model.policy``) as ``policy.safetensors`` + ``policy.json``."""
    from safetensors.torch import save_model

    folder = Path(folder)
    # save_model, not save_file: the actor and critic share one feature extractor (tensors stored once)
    atomic_write(folder / POLICY_FILE, lambda p: save_model(policy, str(p)))
    meta = {
        "format": "lingbot-sb3-policy",
        "version": 1,
        "class": type(policy).__name__,
        "observation_space": _box(policy.observation_space),
        "action_space": _box(policy.action_space),
        **(extra or {}),
    }
    atomic_write(folder / POLICY_META, lambda p: p.write_text(json.dumps(meta, indent=1)))
    return folder


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """A saved policy's ``policy.json``: its class, spaces and extras (e.g. ``view``, ``world``, ``timesteps``)."""
    return json.loads((Path(folder) / POLICY_META).read_text())


def load_policy(folder: str | os.PathLike, device: str = "cpu"):
    """The policy of a :func:`save_policy` folder, in eval mode; a clear error when the folder is not one."""
    from safetensors.torch import load_model
    from stable_baselines3.common import policies

    folder = Path(folder)
    if not (folder / POLICY_META).is_file() or not (folder / POLICY_FILE).is_file():
        raise ValueError(
            f"{folder} is not a saved policy (needs {POLICY_META} and {POLICY_FILE}; written by "
            "python -m agents.train_ppo or agents.policy_io.save_policy). Stable-Baselines3 .zip files are not "
            "read: loading them unpickles code"
        )
    meta = read_meta(folder)
    cls = getattr(policies, meta["class"], None)
    if cls is None:
        raise ValueError(f"{folder / POLICY_META}: unknown policy class {meta['class']!r}")
    policy = cls(_unbox(meta["observation_space"]), _unbox(meta["action_space"]), lr_schedule=lambda _: 0.0)
    try:
        load_model(policy, str(folder / POLICY_FILE), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{folder / POLICY_FILE}: weights do not fit {POLICY_META} ({exc})") from exc
    return policy.to(device).eval()
