"""Sharded tensor sets of the distillation stages: condition sets and teacher ODE pairs, written atomically.

A set is a folder of ``<kind>-NNNNN.safetensors`` shards and one ``index.json`` that lists each shard with its
row count and SHA-256, plus the set's metadata (which teacher / VAE made it, the sampler, the split). Every shard
holds the same tensor names with rows along dim 0; captions travel as a JSON list in the shard's metadata.

* A shard is written to a temporary file and renamed into place, and the index is rewritten (atomically) only
  after the shard is there: a kill leaves the set as it was before that shard, and rerunning the stage resumes
  at the next shard.
* Reading checks each shard against the index: a shard that is missing, whose bytes do not match its SHA-256, or
  that safetensors cannot parse is *named and skipped* with a warning (the stage that writes the set rebuilds it
  when run again), never trained on.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from distillation.training.checkpoint import atomic_write
from world_model.safe_files import sha256_file

INDEX = "index.json"


@dataclass
class ShardSet:
    """A folder of shards: its metadata and the shards listed so far (``name -> {"rows", "sha256"}``)."""

    folder: Path
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, folder: str | Path, kind: str, meta: dict[str, Any] | None = None) -> ShardSet:
        """Open ``folder`` for writing (created if absent). An existing set must have been made with the same
        ``meta`` (same teacher, sampler, ...): appending other rows to it would mix two distributions."""
        folder = Path(folder)
        index = folder / INDEX
        if index.exists():
            d = json.loads(index.read_text())
            if d.get("kind") != kind:
                raise ValueError(f"{folder} holds a {d.get('kind')!r} set, not {kind!r}: use another folder")
            if meta is not None and d.get("meta") != json.loads(json.dumps(meta)):
                raise ValueError(
                    f"{folder} was made with other settings ({d.get('meta')}) than now ({meta}): "
                    "delete it or write to another folder"
                )
            return cls(folder, kind, d.get("meta", {}), d.get("shards", {}))
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, kind, dict(meta or {}))

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards.values())

    def _write_index(self) -> None:
        d = {"kind": self.kind, "meta": self.meta, "shards": self.shards}
        atomic_write(self.folder / INDEX, lambda tmp: Path(tmp).write_text(json.dumps(d, indent=1)))

    def add(self, tensors: dict[str, torch.Tensor], captions: list[str]) -> Path:
        """Write the next shard (rows along dim 0 of every tensor, one caption per row) and list it."""
        n = len(captions)
        if any(t.shape[0] != n for t in tensors.values()):
            raise ValueError(
                f"every tensor needs {n} rows (one per caption): {[tuple(t.shape) for t in tensors.values()]}"
            )
        name = f"{self.kind}-{len(self.shards):05d}.safetensors"
        path = self.folder / name
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"captions": json.dumps(captions)}))
        self.shards[name] = {"rows": n, "sha256": sha256_file(path)}
        self._write_index()
        return path

    def drop_bad(self) -> list[str]:
        """Unlist the shards that fail their check (so that the writer rebuilds them); returns their names."""
        bad = [name for name in self.shards if _problem(self.folder / name, self.shards[name]) is not None]
        for name in bad:
            del self.shards[name]
        if bad:
            self._write_index()
        return bad


def _problem(path: Path, entry: dict[str, Any]) -> str | None:
    if not path.is_file():
        return "missing"
    if sha256_file(path) != entry.get("sha256"):
        return "its bytes do not match the SHA-256 in index.json (corrupt or half-written)"
    return None


def read_set(folder: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """All good shards of a set concatenated: ``(tensors, captions, meta)``. Bad shards are named and skipped."""
    folder = Path(folder)
    index = folder / INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index} is missing: {folder} is not a {kind} set (run the stage that makes it)")
    d = json.loads(index.read_text())
    if d.get("kind") != kind:
        raise ValueError(f"{folder} holds a {d.get('kind')!r} set, not the {kind!r} set this stage reads")
    parts: dict[str, list[torch.Tensor]] = {}
    captions: list[str] = []
    for name, entry in d.get("shards", {}).items():
        path = folder / name
        problem = _problem(path, entry)
        if problem is None:
            try:
                with safe_open(str(path), framework="pt") as f:
                    caps = json.loads(f.metadata()["captions"])
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
            except Exception as exc:  # a shard that matches its hash but does not parse: the writer was broken
                problem = f"unreadable ({exc})"
        if problem is not None:
            warnings.warn(
                f"skipping shard {path}: {problem}; rerun the stage that writes {folder} to rebuild it", stacklevel=2
            )
            continue
        captions += caps
        for k, v in tensors.items():
            parts.setdefault(k, []).append(v)
    if not captions:
        raise ValueError(f"{folder} has no readable shards")
    return {k: torch.cat(v) for k, v in parts.items()}, captions, d.get("meta", {})
