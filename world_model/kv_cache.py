"""Preallocated self-attention KV cache for streaming generation, with per-row state.

Keys are stored *un-rotated*. At attention time every cached frame gets a cache-relative position: sink frames keep
``0 .. S-1``, the window frames follow contiguously from ``S`` in temporal order, and the query chunk comes right
after. RoPE only sees position differences, so this equals absolute positions while nothing was evicted; once the
window rolls, every position stays below ``S + W + chunk``: generation runs for unbounded length in constant
memory and constant time per chunk.

Each batch row is its own stream with its own frame count, so one row can be reset and re-primed while the
others go on (a vector env's autoreset). Slots of a row fill in order (sinks, then the window ring), so the valid
slots of a row are a prefix; rows with shorter prefixes are masked. Rotated keys are memoised per layer and
recomputed only when the cache changes: once per chunk, not once per denoising pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from world_model.rope import Rope3D, apply_rope


@dataclass(frozen=True)
class CacheConfig:
    """How much past the streaming model sees.

    ``global``: every frame since the start (capacity ``max_frames``; positions are absolute and must stay below
    the RoPE table). ``rolling``: the ``sink_frames`` first frames kept forever + the ``window_frames`` most recent.
    """

    mode: Literal["global", "rolling"] = "rolling"
    window_frames: int = 6
    sink_frames: int = 1
    max_frames: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in ("global", "rolling"):
            raise ValueError(f"cache mode must be 'global' or 'rolling', got {self.mode!r}")
        if self.mode == "rolling" and (self.window_frames < 1 or self.sink_frames < 0):
            raise ValueError("a rolling cache needs window_frames >= 1 and sink_frames >= 0")

    @property
    def capacity(self) -> int:
        return self.max_frames if self.mode == "global" else self.sink_frames + self.window_frames


@dataclass(frozen=True)
class WritePlan:
    """The frames of one forward pass, per batch row it covers: absolute indices, RoPE positions, slots."""

    rows: tuple[int, ...]
    frames: tuple[tuple[int, ...], ...]
    positions: tuple[tuple[int, ...], ...]
    slots: tuple[tuple[int, ...], ...] | None


class KVCache:
    """Per-layer K/V for ``capacity`` frames: ``k, v`` are ``[layers, B, slots, tokens_per_frame, H, D]``."""

    def __init__(
        self,
        config: CacheConfig,
        num_layers: int,
        batch_size: int,
        grid: tuple[int, int],
        num_heads: int,
        head_dim: int,
        rope: Rope3D,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.grid = grid
        self.rope = rope
        self.batch_size = batch_size
        shape = (num_layers, batch_size, config.capacity, grid[0] * grid[1], num_heads, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self._k_rot = torch.zeros(shape, device=device, dtype=dtype)
        self.slot_frame = [[-1] * config.capacity for _ in range(batch_size)]
        self.frames_written = [0] * batch_size
        self.version = 0
        self._rot_version = [-1] * num_layers
        self._positions: torch.Tensor | None = None
        # (layer, slot, rows) -> copies of that slot's un-rotated K/V, shared by the passes that keep them (frozen)
        self._frozen: dict[tuple[int, int, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- state ---------------------------------------------------------------------------------------------
    def reset(self, rows: Sequence[int] | None = None) -> None:
        """Forget the frames of ``rows`` (default: all rows)."""
        for b in range(self.batch_size) if rows is None else rows:
            self.slot_frame[b] = [-1] * self.config.capacity
            self.frames_written[b] = 0
        self._frozen.clear()
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._positions = None

    def num_valid(self, row: int) -> int:
        return min(self.frames_written[row], self.config.capacity)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self._k_rot))

    def _relative(self, row: int, frame: int) -> int:
        """Cache-relative RoPE position of absolute ``frame`` of ``row``."""
        if self.config.mode == "global":
            return frame
        s = self.config.sink_frames
        if frame < s:
            return frame
        window = self.slot_frame[row][s : self.num_valid(row)]
        return s + frame - (min(window) if window else s)

    # -- planning and writing ------------------------------------------------------------------------------
    def plan(self, num_frames: int, write: bool, rows: Sequence[int] | None = None) -> WritePlan:
        """Positions (and slots, when ``write``) of the next ``num_frames`` frames of ``rows``, from the state
        before them."""
        cfg = self.config
        rows = tuple(range(self.batch_size)) if rows is None else tuple(rows)
        if cfg.mode == "rolling" and num_frames > cfg.window_frames:
            raise ValueError(
                f"a chunk of {num_frames} frames does not fit a rolling window of {cfg.window_frames} frames: "
                "use window_frames >= the chunk size"
            )
        frames = tuple(tuple(range(self.frames_written[b], self.frames_written[b] + num_frames)) for b in rows)
        positions = tuple(tuple(self._relative(b, f) for f in fr) for b, fr in zip(rows, frames))
        top = max(max(p) for p in positions)
        if top >= self.rope.max_positions:
            raise ValueError(
                f"frame {max(fr[-1] for fr in frames)} would sit at RoPE position {top} >= "
                f"{self.rope.max_positions}: a global cache cannot go further; use CacheConfig(mode='rolling')"
            )
        slots = None
        if write:
            if cfg.mode == "global" and max(fr[-1] for fr in frames) >= cfg.capacity:
                raise ValueError(f"global KV cache is full ({cfg.capacity} frames): raise max_frames or use 'rolling'")
            slots = tuple(tuple(self._slot_for(f) for f in fr) for fr in frames)
        return WritePlan(rows, frames, positions, slots)

    def _slot_for(self, frame: int) -> int:
        cfg = self.config
        if cfg.mode == "global" or frame < cfg.sink_frames:
            return frame
        return cfg.sink_frames + (frame - cfg.sink_frames) % cfg.window_frames

    def write(self, layer: int, plan: WritePlan, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store one layer's un-rotated ``k, v`` ``[len(rows), F * tokens_per_frame, H, D]`` in the planned slots."""
        assert plan.slots is not None, "plan was made with write=False"
        n, _, h, d = k.shape
        rows = torch.tensor(plan.rows, device=k.device)[:, None]
        slots = torch.tensor(plan.slots, device=k.device)
        self.k[layer, rows, slots] = k.reshape(n, slots.shape[1], -1, h, d).to(self.k.dtype)
        self.v[layer, rows, slots] = v.reshape(n, slots.shape[1], -1, h, d).to(self.v.dtype)
        if self._frozen:  # (empty at inference: nothing keeps gradients)
            written = {slot for row in plan.slots for slot in row}
            for key in [key for key in self._frozen if key[0] == layer and key[1] in written]:
                del self._frozen[key]  # the passes holding them keep their copies; later ones copy the new frame

    def commit(self, plan: WritePlan) -> None:
        """Mark the planned frames as cached, after every layer has written them."""
        assert plan.slots is not None
        for b, fr, sl in zip(plan.rows, plan.frames, plan.slots):
            for f, slot in zip(fr, sl):
                self.slot_frame[b][slot] = f
            self.frames_written[b] = fr[-1] + 1
        self._changed()

    # -- reading -------------------------------------------------------------------------------------------
    def slot_positions(self) -> torch.Tensor:
        """Cache-relative RoPE position of every slot, ``[B, capacity]`` (0 for empty slots)."""
        if self._positions is None:
            pos = [[self._relative(b, f) if f >= 0 else 0 for f in self.slot_frame[b]] for b in range(self.batch_size)]
            self._positions = torch.tensor(pos, dtype=torch.long, device=self.k.device)
        return self._positions

    def frozen(self, layer: int, rows: tuple[int, ...], n: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Un-rotated ``(k, v)`` of slots ``0 .. n-1`` of ``rows`` as they are now, ``[len(rows), tokens, H, D]`` each,
        which later writes leave alone: what a pass that keeps gradients attended to, for its recompute in the
        backward (gradient checkpointing). A slot's copy is made once and shared by every later pass that sees the
        same frame there, so ``P`` such passes over a window of ``W`` frames keep about ``P + W`` frames of K/V
        instead of ``P * W``."""
        idx = slice(None) if rows == tuple(range(self.batch_size)) else list(rows)
        out = []
        for slot in range(n):
            key = (layer, slot, rows)
            if key not in self._frozen:
                self._frozen[key] = (self.k[layer, idx, slot].clone(), self.v[layer, idx, slot].clone())
            out.append(self._frozen[key])
        return tuple(out)

    def keys_values(self, layer: int, rows: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Rotated keys and values of ``rows``: ``[len(rows), n * tokens_per_frame, H, D]`` with ``n`` the longest
        valid prefix among them, and a key mask ``[len(rows), n * tokens_per_frame]`` (None when all are full)."""
        counts = [self.num_valid(b) for b in rows]
        n = max(counts)
        tpf, h, d = self.k.shape[3:]
        if self._rot_version[layer] != self.version:
            top = max(self.num_valid(b) for b in range(self.batch_size))
            if top:
                b = self.batch_size
                cos, sin = self.rope.cos_sin(self.slot_positions()[:, :top].reshape(-1), *self.grid)
                cos, sin = (t.view(b, top * tpf, -1) for t in (cos, sin))
                rot = apply_rope(self.k[layer, :, :top].reshape(b, top * tpf, h, d), cos, sin)
                self._k_rot[layer, :, :top] = rot.view(b, top, tpf, h, d)
            self._rot_version[layer] = self.version
        idx = slice(None) if rows == tuple(range(self.batch_size)) else list(rows)
        k = self._k_rot[layer, idx, :n].reshape(len(rows), n * tpf, h, d)
        v = self.v[layer, idx, :n].reshape(len(rows), n * tpf, h, d)
        mask = None
        if min(counts) < n:
            valid = torch.arange(n, device=k.device)[None, :] < torch.tensor(counts, device=k.device)[:, None]
            mask = valid.repeat_interleave(tpf, dim=1)
        return k, v, mask
