"""PyTorch datasets of fixed-length clips: over collected shards, or generated on the fly by game workers.

Both yield the same item (a dict), for a clip of ``n`` steps and ``F = 4n + 1`` frames:

- ``frames``: uint8 [F, H, W, 3] (``dtype="uint8"``) or float32 in [-1, 1] (``dtype="float32"``);
  with ``layout="CFHW"``: [3, F, H, W] (what the Wan VAE takes).
- ``actions``: float32 [n, 6] = ``[W, A, S, D, yaw, pitch]``; action ``i`` is held for frames
  ``4i+1 .. 4i+4`` (latent frame ``i + 1``); frame 0 (latent frame 0) is the start frame.
- ``poses``: float32 [F, 5] = (x, y, z, yaw, pitch) per frame. ``rewards``: float32 [n].
- ``captions``: list of n + 1 strings, one per latent frame (entry ``j`` describes frame ``4j``).
- ``caption``: str, the clip's text prompt = ``captions[0]``.
- ``map``, ``wad``: str; ``seed``: int (episode seed); ``clip_id``: str.
- ``objects`` (only with ``with_objects=True``): JSON string of the n + 1 visible-object lists.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from distillation.data.clips import Clip, GenerationConfig, stream_worker
from distillation.data.shards import ShardReader, index_shards, load_index

FrameDType = Literal["uint8", "float32"]
Layout = Literal["FHWC", "CFHW"]


def _frames_tensor(frames: np.ndarray, dtype: FrameDType, layout: Layout) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(frames))
    if dtype == "float32":
        t = t.float().div_(127.5).sub_(1.0)
    elif dtype != "uint8":
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
    if layout == "CFHW":
        t = t.permute(3, 0, 1, 2).contiguous()
    elif layout != "FHWC":
        raise ValueError(f"layout must be 'FHWC' or 'CFHW', got {layout!r}")
    return t


def clip_item(
    clip: Clip,
    offset: int,
    steps: int,
    frames_per_step: int,
    clip_id: str,
    dtype: FrameDType = "uint8",
    layout: Layout = "FHWC",
    with_objects: bool = False,
) -> dict[str, Any]:
    """The dataset item for the window of ``steps`` steps starting ``offset`` steps into ``clip``."""
    f0, f1 = frames_per_step * offset, frames_per_step * (offset + steps) + 1
    captions = list(clip.captions[offset : offset + steps + 1])
    item: dict[str, Any] = {
        "frames": _frames_tensor(clip.frames[f0:f1], dtype, layout),
        "actions": torch.from_numpy(np.array(clip.actions[offset : offset + steps], dtype=np.float32)),
        "poses": torch.from_numpy(np.array(clip.poses[f0:f1], dtype=np.float32)),
        "rewards": torch.from_numpy(np.array(clip.rewards[offset : offset + steps], dtype=np.float32)),
        "captions": captions,
        "caption": captions[0],
        "map": clip.map,
        "wad": clip.wad,
        "seed": int(clip.seed),
        "clip_id": clip_id,
    }
    if with_objects:
        item["objects"] = json.dumps(clip.objects[offset : offset + steps + 1])
    return item


class ShardClipDataset(Dataset):
    """Fixed-length clip windows read from a collected data folder (map-style, random access).

    Args:
        root: data folder with ``index.json`` (see :mod:`distillation.data.shards`).
        split: ``"train"`` or ``"val"`` (map-disjoint).
        steps: window length ``n`` in steps (``F = 4n + 1`` frames); default: the stored clip length.
        stride: step offset between windows of one stored clip; default ``steps`` (non-overlapping).
        dtype, layout, with_objects: item format (module docstring).
        max_open_shards: shard files kept open per process (each DataLoader worker has its own).
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        steps: int | None = None,
        stride: int | None = None,
        dtype: FrameDType = "uint8",
        layout: Layout = "FHWC",
        with_objects: bool = False,
        max_open_shards: int = 4,
    ) -> None:
        index = load_index(root)
        if index is None:
            raise FileNotFoundError(f"no index.json in {root!r}: collect data first (python -m distillation.collect)")
        self.root, self.split, self.index = root, split, index
        self.frames_per_step = int(index["frames_per_step"])
        stored = int(index["steps_per_clip"])
        self.steps = stored if steps is None else int(steps)
        if not 1 <= self.steps <= stored:
            raise ValueError(f"steps must be in 1..{stored} (the stored clip length), got {steps}")
        self.stride = self.steps if stride is None else int(stride)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.dtype, self.layout, self.with_objects = dtype, layout, with_objects
        self.shards = index_shards(index, root, split)
        offsets = list(range(0, stored - self.steps + 1, self.stride))
        self._items = [(si, ci, o) for si, e in enumerate(self.shards) for ci in range(e["num_clips"]) for o in offsets]
        self._open: OrderedDict[int, ShardReader] = OrderedDict()
        self._max_open = max(1, max_open_shards)

    @property
    def frames_per_clip(self) -> int:
        return self.frames_per_step * self.steps + 1

    def __len__(self) -> int:
        return len(self._items)

    def _reader(self, si: int) -> ShardReader:
        if si in self._open:
            self._open.move_to_end(si)
            return self._open[si]
        reader = ShardReader(os.path.join(self.root, self.shards[si]["file"]))
        self._open[si] = reader
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return reader

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} clips")
        si, ci, off = self._items[idx]
        clip = self._reader(si).clip(ci)
        clip_id = f"{self.shards[si]['file']}#{ci}@{off}"
        return clip_item(
            clip, off, self.steps, self.frames_per_step, clip_id, self.dtype, self.layout, self.with_objects
        )

    def __getstate__(self) -> dict[str, Any]:
        # Open zip handles cannot cross into DataLoader worker processes; each reopens its own.
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state


class OnTheFlyClipDataset(IterableDataset):
    """Endless clips generated while training: ``num_workers`` game processes feed a queue.

    Meant for a GPU box with many cores and no stored data: use it directly or in a ``DataLoader`` with
    ``num_workers=0`` (the game processes are this dataset's own). Inside a DataLoader worker it instead
    plays in that worker's process (one game per DataLoader worker). Worker ``i`` of seed ``s`` plays a
    reproducible stream of episodes, but clips from different workers interleave in arrival order.

    Args:
        config: generation settings (environment, maps, clip length, policy).
        split: ``"train"`` or ``"val"`` maps.
        num_workers: game processes (0 = play in the consuming process).
        seed: base seed of the streams.
        steps: window length ``n`` (<= ``config.steps_per_clip``); each generated clip gives
            ``config.steps_per_clip // steps`` non-overlapping windows.
        max_clips: stop after this many windows in total (``None`` = endless).
        queue_size: clips buffered ahead per worker.
        dtype, layout, with_objects: item format (module docstring).

    After an iteration over worker processes ends, ``last_exitcodes`` holds their exit codes (0 = clean).
    """

    def __init__(
        self,
        config: GenerationConfig,
        split: str = "train",
        num_workers: int = 4,
        seed: int = 0,
        steps: int | None = None,
        max_clips: int | None = None,
        queue_size: int = 4,
        dtype: FrameDType = "uint8",
        layout: Layout = "FHWC",
        with_objects: bool = False,
    ) -> None:
        config.maps.maps(split)  # validates the split name
        self.config, self.split, self.num_workers, self.seed = config, split, int(num_workers), int(seed)
        self.steps = config.steps_per_clip if steps is None else int(steps)
        if not 1 <= self.steps <= config.steps_per_clip:
            raise ValueError(f"steps must be in 1..{config.steps_per_clip}, got {steps}")
        self.max_clips, self.queue_size = max_clips, max(1, queue_size)
        self.dtype, self.layout, self.with_objects = dtype, layout, with_objects
        self.last_exitcodes: list[int | None] = []

    def _windows(self, clip: Clip, tag: str) -> Iterator[dict[str, Any]]:
        fps = self.config.frames_per_step
        for off in range(0, self.config.steps_per_clip - self.steps + 1, self.steps):
            yield clip_item(clip, off, self.steps, fps, f"{tag}@{off}", self.dtype, self.layout, self.with_objects)

    def _inline(self, stream: int) -> Iterator[tuple[str, Clip]]:
        from distillation.data.clips import ClipGenerator, stream_rng

        gen = ClipGenerator(self.config)
        try:
            for k, clip in enumerate(gen.clips(stream_rng(self.seed, self.split, stream, "online"), self.split)):
                yield f"online-{stream}-{k}", clip
        finally:
            gen.close()

    def _processes(self) -> Iterator[tuple[str, Clip]]:
        ctx = mp.get_context("spawn")
        out = ctx.Queue(maxsize=self.queue_size * self.num_workers)
        stop = ctx.Event()
        procs = [
            ctx.Process(
                target=stream_worker,
                args=(self.config, self.split, self.seed, i, out, stop),
                daemon=True,
                name=f"doom-clips-{i}",
            )
            for i in range(self.num_workers)
        ]
        for p in procs:
            p.start()
        try:
            while True:
                try:
                    stream, k, clip = out.get(timeout=5.0)
                except queue_mod.Empty:
                    dead = [p.name for p in procs if not p.is_alive()]
                    if dead:
                        raise RuntimeError(f"clip workers died: {dead}") from None
                    continue
                if k < 0:
                    raise RuntimeError(f"clip worker {stream} failed: {clip}")
                yield f"online-{stream}-{k}", clip
        finally:
            stop.set()
            # Keep draining while the workers finish their clip and close their games: a worker blocked
            # on a full queue would otherwise never see the stop flag. Killing one instead would leave
            # its engine process to crash.
            deadline = time.monotonic() + 30.0
            while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
                try:
                    while True:
                        out.get_nowait()
                except queue_mod.Empty:
                    pass
                for p in procs:
                    p.join(timeout=0.05)
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2.0)
            self.last_exitcodes = [p.exitcode for p in procs]
            out.close()
            out.cancel_join_thread()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is not None:
            source = self._inline(info.id)
            budget = None if self.max_clips is None else len(range(info.id, self.max_clips, info.num_workers))
        elif self.num_workers == 0:
            source, budget = self._inline(0), self.max_clips
        else:
            source, budget = self._processes(), self.max_clips
        made = 0
        try:
            for tag, clip in source:
                for item in self._windows(clip, tag):
                    if budget is not None and made >= budget:
                        return
                    yield item
                    made += 1
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
