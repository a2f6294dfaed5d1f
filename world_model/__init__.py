"""LingBot-World / Wan world models: the DiT in three attention modes, the causal VAE, conditioning, loading,
streaming generation and the interactive world that Gym drives.

Heavy submodules load on first use, so ``import world_model`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "WanDiTConfig": "world_model.config",
    "WanDiT": "world_model.dit",
    "CacheConfig": "world_model.kv_cache",
    "KVCache": "world_model.kv_cache",
    "StreamConfig": "world_model.streaming",
    "StreamingGenerator": "world_model.streaming",
    "FewStepSchedule": "world_model.sampling",
    "InteractiveWorld": "world_model.world",
    "WorldSpec": "world_model.world",
    "build_model": "world_model.checkpoints",
    "load_model": "world_model.checkpoints",
    "get_preset": "world_model.checkpoints",
    "list_presets": "world_model.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'world_model' has no attribute {name!r}")
