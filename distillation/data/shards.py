"""Shard files and the index: the on-disk format of collected clips.

A data folder holds ``index.json`` and shards ``{split}-{shard:05d}.npz``. A shard is a zip of ``.npy``
members (so ``numpy.load`` opens it) plus ``meta.json``:

- ``frames_0000`` ... : uint8 [F, H, W, 3] per clip (one member each, so reading a clip decompresses
  only that clip);
- ``actions`` float32 [C, n, 6], ``poses`` float32 [C, F, 5], ``rewards`` float32 [C, n];
- ``meta.json``: per clip ``map``, ``wad``, ``seed``, ``episode``, ``index``, ``captions`` (n + 1) and
  ``objects`` (n + 1 lists of visible-object dicts).

Writes are atomic: a shard goes to a temporary file that is renamed into place (``os.replace``), and the
index is rewritten the same way *after* its shard, so a killed collector leaves either a complete shard
listed in the index or nothing that counts.
"""

from __future__ import annotations

import glob
import json
import os
import zipfile
from typing import Any

import numpy as np

from distillation.data.clips import Clip

INDEX_NAME = "index.json"
FORMAT = "lingbot-doom-clips"
FORMAT_VERSION = 1
_TMP_TAG = ".tmp-"


def shard_name(split: str, shard: int) -> str:
    return f"{split}-{shard:05d}.npz"


def _fsync_replace(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _put(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def write_shard(path: str, clips: list[Clip], compress_level: int = 1) -> dict[str, Any]:
    """Write ``clips`` (all of the same shape) atomically to ``path``; return the shard's index entry.

    ``compress_level`` is the zlib level (1 = fast; Doom frames still shrink several-fold).
    """
    if not clips:
        raise ValueError("a shard needs at least one clip")
    tmp = f"{path}{_TMP_TAG}{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compress_level) as zf:
        for i, c in enumerate(clips):
            _put(zf, f"frames_{i:04d}", c.frames)
        _put(zf, "actions", np.stack([c.actions for c in clips]))
        _put(zf, "poses", np.stack([c.poses for c in clips]))
        _put(zf, "rewards", np.stack([c.rewards for c in clips]))
        meta = {
            "clips": [
                {
                    "map": c.map,
                    "wad": c.wad,
                    "seed": c.seed,
                    "episode": c.episode,
                    "index": c.index,
                    "captions": c.captions,
                    "objects": c.objects,
                }
                for c in clips
            ]
        }
        zf.writestr("meta.json", json.dumps(meta))
    _fsync_replace(tmp, path)
    maps: dict[str, int] = {}
    for c in clips:
        maps[c.map] = maps.get(c.map, 0) + 1
    return {
        "file": os.path.basename(path),
        "num_clips": len(clips),
        "num_frames": int(sum(len(c.frames) for c in clips)),
        "frame_shape": list(clips[0].frames.shape[1:]),
        "maps": maps,
        "bytes": os.path.getsize(path),
    }


class ShardReader:
    """Random access to the clips of one shard file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._zf = zipfile.ZipFile(path)
        self.meta: dict[str, Any] = json.loads(self._zf.read("meta.json"))
        self._arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.meta["clips"])

    def _array(self, name: str) -> np.ndarray:
        with self._zf.open(name + ".npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def small(self, name: str) -> np.ndarray:
        """``actions`` [C, n, 6], ``poses`` [C, F, 5] or ``rewards`` [C, n] (cached)."""
        if name not in self._arrays:
            self._arrays[name] = self._array(name)
        return self._arrays[name]

    def frames(self, i: int) -> np.ndarray:
        """uint8 [F, H, W, 3] of clip ``i``."""
        return self._array(f"frames_{i:04d}")

    def clip(self, i: int) -> Clip:
        m = self.meta["clips"][i]
        return Clip(
            frames=self.frames(i),
            actions=self.small("actions")[i],
            poses=self.small("poses")[i],
            rewards=self.small("rewards")[i],
            captions=list(m["captions"]),
            objects=m["objects"],
            map=m["map"],
            wad=m["wad"],
            seed=int(m["seed"]),
            episode=int(m["episode"]),
            index=int(m["index"]),
        )

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_index(root: str) -> dict[str, Any] | None:
    """The folder's index, or ``None`` if there is none yet."""
    path = os.path.join(root, INDEX_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index (format={index.get('format')!r})")
    if index.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {index.get('version')}, this code reads {FORMAT_VERSION}")
    return index


def write_index(root: str, index: dict[str, Any]) -> None:
    """Atomically (re)write the folder's index, shards sorted by (split, shard)."""
    index = dict(index)
    index["shards"] = sorted(index["shards"], key=lambda e: (e["split"], e["shard"]))
    path = os.path.join(root, INDEX_NAME)
    tmp = f"{path}{_TMP_TAG}{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
    _fsync_replace(tmp, path)


def remove_temporaries(root: str) -> list[str]:
    """Delete half-written files left by a killed collector; return their paths."""
    stale = glob.glob(os.path.join(root, f"*{_TMP_TAG}*"))
    for p in stale:
        os.remove(p)
    return stale


def index_shards(index: dict[str, Any], root: str, split: str | None = None) -> list[dict[str, Any]]:
    """Index entries of ``split`` (all if ``None``) whose files exist, sorted by shard number."""
    out = [
        e
        for e in index["shards"]
        if (split is None or e["split"] == split) and os.path.exists(os.path.join(root, e["file"]))
    ]
    return sorted(out, key=lambda e: (e["split"], e["shard"]))
