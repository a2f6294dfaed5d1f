"""Save DiTs in the official release layout, so a trained student is published the way LingBot publishes theirs.

An expert folder gets ``<prefix>-0000k-of-0000n.safetensors`` shards, ``diffusion_pytorch_model.safetensors.index.json``
(``{"metadata": {"total_size": bytes}, "weight_map": {name: shard}}``) and ``config.json``
(:meth:`WanDiTConfig.to_official`). One shard is written as ``<prefix>.safetensors`` with no index. ``SHA256SUMS``
(``sha256sum -c`` format) records every file's digest; :func:`~world_model.checkpoints.loading.load_weights_`
checks them before loading.

Writes are atomic per folder: everything goes to a temporary sibling folder that is renamed into place only when
complete, so a crash never leaves a half-written checkpoint under the final name. Only one shard is copied to host
memory at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from world_model.checkpoints.build import ExpertPair
from world_model.checkpoints.presets import Preset, get_preset
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT
from world_model.safe_files import write_sha256sums

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


@dataclass(frozen=True)
class ShardLayout:
    """File names of a sharded checkpoint. Base experts: :data:`DIFFUSERS_LAYOUT`; LingBot Fast: :data:`FAST_LAYOUT`
    (``model-000kk-of-000nn.safetensors`` shards, but the diffusers index name)."""

    shard_prefix: str = "diffusion_pytorch_model"
    index_name: str = "diffusion_pytorch_model.safetensors.index.json"

    def shard_name(self, k: int, n: int) -> str:
        return f"{self.shard_prefix}.safetensors" if n == 1 else f"{self.shard_prefix}-{k:05d}-of-{n:05d}.safetensors"


DIFFUSERS_LAYOUT = ShardLayout()
FAST_LAYOUT = ShardLayout(shard_prefix="model")


@dataclass(frozen=True)
class SavedCheckpoint:
    folder: Path
    files: tuple[Path, ...]
    index: Path | None
    total_size: int


def parse_size(size: int | str) -> int:
    """``"10GB"`` -> 10**10 bytes (decimal units as in diffusers; ``GiB`` etc. binary); ints pass through."""
    if isinstance(size, int):
        n = size
    else:
        m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", size)
        if not m or m.group(2).upper() not in _UNITS:
            raise ValueError(f"cannot read size {size!r}: use bytes or e.g. '10GB', '500MB', '2GiB'")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n < 1:
        raise ValueError(f"shard size must be positive, got {size!r}")
    return n


def plan_shards(sizes: list[tuple[str, int]], max_shard_bytes: int | None = None, num_shards: int | None = None):
    """Split ``(name, nbytes)`` in order into contiguous shards: greedily up to ``max_shard_bytes`` each (a tensor
    larger than that gets a shard of its own), or into exactly ``num_shards`` shards of about equal bytes (fewer
    only when there are fewer tensors)."""
    if (max_shard_bytes is None) == (num_shards is None):
        raise ValueError("give exactly one of max_shard_bytes and num_shards")
    shards: list[list[str]] = []
    if num_shards is not None:
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        n = min(num_shards, len(sizes))
        i, remaining = 0, sum(s for _, s in sizes)
        for j in range(n):
            left = n - j  # shards still to fill, this one included
            # Aim at an equal share of what is left; keep at least one tensor for each later shard.
            target, last = remaining / left, len(sizes) - (left - 1)
            shard, acc = [sizes[i][0]], sizes[i][1]
            i += 1
            while i < last and (left == 1 or acc + sizes[i][1] / 2 <= target):
                shard.append(sizes[i][0])
                acc += sizes[i][1]
                i += 1
            shards.append(shard)
            remaining -= acc
        return shards
    current, current_bytes = [], 0
    for name, s in sizes:
        if current and current_bytes + s > max_shard_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(name)
        current_bytes += s
    if current:
        shards.append(current)
    return shards


def fsync_file(path: Path) -> None:
    """Flush a written file to the disk (before it is renamed into place, so a crash never leaves a half file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, folder: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` folder to ``folder`` (replacing it only with ``overwrite``)."""
    if folder.exists():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        elif not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty: pass overwrite=True to replace it")
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            old.rmdir()
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.rename(tmp, folder)


def save_checkpoint(
    model: WanDiT | Mapping[str, torch.Tensor],
    folder: str | Path,
    *,
    config: WanDiTConfig | None = None,
    max_shard_size: int | str = "10GB",
    num_shards: int | None = None,
    dtype: torch.dtype | None = None,
    layout: ShardLayout = DIFFUSERS_LAYOUT,
    overwrite: bool = False,
) -> SavedCheckpoint:
    """Write one DiT to ``folder`` in the official layout.

    Args:
        model: a :class:`WanDiT` or an official-named state dict (then pass ``config`` for ``config.json``).
        max_shard_size: bytes per shard at most (``"10GB"``, ``"500MB"`` or an int); ignored with ``num_shards``.
        num_shards: split into this many shards of about equal size instead (e.g. 8 like the LingBot experts).
        dtype: dtype written (default: as the tensors are; the official shards are fp32).
        layout: shard / index file names (:data:`DIFFUSERS_LAYOUT` or :data:`FAST_LAYOUT`).
        overwrite: replace an existing non-empty ``folder`` as a whole (files not written here are removed).
    """
    folder = Path(folder)
    if isinstance(model, WanDiT):
        config = config or model.cfg
        state = model.state_dict()
    else:
        state = dict(model)
    if any(t.is_meta for t in state.values()):
        raise ValueError("the model is on the meta device (no data): load or initialise it before saving")
    if folder.exists() and not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty: pass overwrite=True to replace it")

    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * (torch.empty((), dtype=dtype).element_size() if dtype else t.element_size())

    sizes = [(k, nbytes(v)) for k, v in state.items()]
    if num_shards is not None:
        shards = plan_shards(sizes, num_shards=num_shards)
    else:
        shards = plan_shards(sizes, max_shard_bytes=parse_size(max_shard_size))
    n = len(shards)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        weight_map: dict[str, str] = {}
        files = []
        for k, names in enumerate(shards, start=1):
            fname = layout.shard_name(k, n)
            # Only this shard is copied to the host; the rest of the model stays where it is.
            tensors = {name: state[name].detach().to("cpu", dtype or state[name].dtype).contiguous() for name in names}
            save_file(tensors, str(tmp / fname), metadata={"format": "pt"})
            del tensors
            fsync_file(tmp / fname)
            weight_map.update(dict.fromkeys(names, fname))
            files.append(folder / fname)
        total = sum(s for _, s in sizes)
        index = None
        if n > 1:
            index = folder / layout.index_name
            with open(tmp / layout.index_name, "w", encoding="utf-8") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            fsync_file(tmp / layout.index_name)
        if config is not None:
            with open(tmp / "config.json", "w", encoding="utf-8") as f:
                json.dump(config.to_official(), f, indent=2)
            fsync_file(tmp / "config.json")
        # Per-file SHA-256 (sha256sum format), checked by the loader before it copies a tensor.
        fsync_file(write_sha256sums(tmp, [p.name for p in tmp.iterdir()]))
        _commit(tmp, folder, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SavedCheckpoint(folder, tuple(files), index, total)


def save_model(
    model: WanDiT | ExpertPair,
    root: str | Path,
    preset: str | Preset | None = None,
    **kwargs,
) -> dict[str, SavedCheckpoint]:
    """Write a model as a release root: a pair into ``high_noise_model/`` + ``low_noise_model/``, a single DiT into
    the preset's subfolder (``lingbot_world_fast/`` uses :data:`FAST_LAYOUT`) or ``root`` itself.

    ``kwargs`` go to :func:`save_checkpoint`. Returns ``{expert name: SavedCheckpoint}``."""
    root = Path(root)
    p = get_preset(preset) if preset is not None else None
    if isinstance(model, ExpertPair):
        subs = {e.name: e.subfolder for e in p.experts} if p else {"high": "high_noise_model", "low": "low_noise_model"}
        return {name: save_checkpoint(getattr(model, name), root / subs[name], **kwargs) for name in ("high", "low")}
    sub = p.experts[0].subfolder if p else ""
    if sub == "lingbot_world_fast":
        kwargs.setdefault("layout", FAST_LAYOUT)
    return {"model": save_checkpoint(model, root / sub if sub else root, **kwargs)}
