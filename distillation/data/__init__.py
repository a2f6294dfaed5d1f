"""The data engine: real-game play -> clip shards -> PyTorch datasets (stored or generated on the fly).

Modules: ``policy`` (exploration policy, plug-in point), ``splits`` (map split), ``clips`` (playing and
cutting clips), ``shards`` (file format), ``collector`` (resumable shard writer), ``dataset`` (PyTorch
datasets), ``report`` (data report). Names are imported lazily so that ``import distillation.data``
pulls in neither torch nor ViZDoom.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExplorationPolicy": "policy",
    "ExplorerConfig": "policy",
    "Policy": "policy",
    "load_policy": "policy",
    "MapSplit": "splits",
    "Clip": "clips",
    "ClipGenerator": "clips",
    "GenerationConfig": "clips",
    "ShardReader": "shards",
    "load_index": "shards",
    "CollectConfig": "collector",
    "collect": "collector",
    "ShardClipDataset": "dataset",
    "OnTheFlyClipDataset": "dataset",
    "make_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"distillation.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'distillation.data' has no attribute {name!r}")
