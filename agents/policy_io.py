"""Stable-Baselines3 policies and PPO training state on disk without pickles: safetensors + JSON.

``PPO.save`` writes a zip whose ``data`` entry holds cloudpickled objects (spaces, schedules), and ``PPO.load``
unpickles them: a file from elsewhere could run code. This project never unpickles, so a policy folder holds

    policy.safetensors   the policy network's weights (``policy.state_dict()``)
    policy.json          what rebuilds it: the policy class name, observation and action spaces (Box), kwargs

and a PPO training checkpoint adds ``optimizer.pt`` (loaded with ``weights_only=True``: tensors and plain
containers only) and ``state.json`` (timesteps done, the learning curve so far). Every file is written to a
temporary name and renamed, so a kill leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

POLICY_FILE, POLICY_META, OPTIMIZER_FILE, STATE_FILE = "policy.safetensors", "policy.json", "optimizer.pt", "state.json"


def _box(space: spaces.Box) -> dict[str, Any]:
    if not isinstance(space, spaces.Box):
        raise TypeError(f"only Box spaces are stored, got {space}")
    return {"low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}


def _unbox(d: dict[str, Any]) -> spaces.Box:
    dtype = np.dtype(d["dtype"])
    return spaces.Box(np.asarray(d["low"], dtype), np.asarray(d["high"], dtype), dtype=dtype)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _load_weights(policy, path: Path) -> None:
    from safetensors.torch import load_model

    device = next(policy.parameters()).device
    load_model(policy, str(path), strict=True, device=str(device))


def save_policy(policy, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write an SB3 ``BasePolicy`` (e.g. ``model.policy``) as ``policy.safetensors`` + ``policy.json``."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # save_model, not save_file: the actor and critic share one feature extractor (tensors stored once)
    _write_atomic(folder / POLICY_FILE, lambda p: save_model(policy, str(p)))
    meta = {
        "format": "lingbot-sb3-policy",
        "version": 1,
        "class": type(policy).__name__,
        "observation_space": _box(policy.observation_space),
        "action_space": _box(policy.action_space),
        **(extra or {}),
    }
    _write_atomic(folder / POLICY_META, lambda p: p.write_text(json.dumps(meta, indent=1)))
    return folder


def load_policy(folder: str | os.PathLike, device: str = "cpu"):
    """The policy of a :func:`save_policy` folder, in eval mode; a clear error when the folder is not one."""
    from stable_baselines3.common import policies

    folder = Path(folder)
    if not (folder / POLICY_META).is_file() or not (folder / POLICY_FILE).is_file():
        raise ValueError(
            f"{folder} is not a saved policy (needs {POLICY_META} and {POLICY_FILE}; written by "
            "python -m agents.train_ppo or agents.policy_io.save_policy). Stable-Baselines3 .zip files are not "
            "read: loading them unpickles code"
        )
    meta = json.loads((folder / POLICY_META).read_text())
    cls = getattr(policies, meta["class"], None)
    if cls is None:
        raise ValueError(f"{folder / POLICY_META}: unknown policy class {meta['class']!r}")
    policy = cls(_unbox(meta["observation_space"]), _unbox(meta["action_space"]), lr_schedule=lambda _: 0.0)
    try:
        _load_weights(policy, folder / POLICY_FILE)
    except RuntimeError as exc:
        raise ValueError(f"{folder / POLICY_FILE}: weights do not fit {POLICY_META} ({exc})") from exc
    return policy.to(device).eval()


def save_training(model, folder: str | os.PathLike, state: dict[str, Any]) -> None:
    """A resumable PPO checkpoint: the policy, its optimizer and ``state`` (must include ``timesteps``)."""
    folder = Path(folder)
    save_policy(model.policy, folder)
    opt = model.policy.optimizer.state_dict()
    _write_atomic(folder / OPTIMIZER_FILE, lambda p: torch.save(opt, p))
    _write_atomic(folder / STATE_FILE, lambda p: p.write_text(json.dumps(state, indent=1)))


def restore_training(model, folder: str | os.PathLike) -> dict[str, Any] | None:
    """Load a :func:`save_training` checkpoint into ``model`` (built with the same arguments); its ``state``, or
    None when the folder holds none. ``model.num_timesteps`` is set so ``learn(reset_num_timesteps=False)`` goes on."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        return None
    state = json.loads((folder / STATE_FILE).read_text())
    _load_weights(model.policy, folder / POLICY_FILE)
    opt = torch.load(folder / OPTIMIZER_FILE, map_location=model.device, weights_only=True)
    model.policy.optimizer.load_state_dict(opt)
    model.num_timesteps = int(state["timesteps"])
    return state
