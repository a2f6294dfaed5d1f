"""Preallocated self-attention KV cache for streaming generation.

Keys are stored *un-rotated*. At attention time every cached frame gets a cache-relative position: sink frames keep
``0 .. S-1``, the window frames follow contiguously from ``S`` in temporal order, and the query chunk comes right
after. Because RoPE only sees position differences, this equals absolute positions as long as nothing was evicted,
and once the window rolls it keeps every position below ``S + W + chunk``: generation can run for unbounded length
in constant memory and constant time per chunk.

Slots are filled in order (sinks first, then the window ring), so the valid slots are always a prefix; the ring
overwrites the oldest window frame. The rotated keys are memoised per layer and recomputed only when the cache
changes, i.e. once per chunk rather than once per denoising pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from world_model.rope import Rope3D, apply_rope


@dataclass(frozen=True)
class CacheConfig:
    """How much past the streaming model sees.

    ``global``: every frame since the start (capacity ``max_frames``, positions are absolute and must stay below
    the RoPE table). ``rolling``: ``sink_frames`` first frames kept forever plus the ``window_frames`` most recent.
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
    """Where the frames of one forward pass sit: their absolute indices, RoPE positions and (if written) slots."""

    frames: tuple[int, ...]
    positions: tuple[int, ...]
    slots: tuple[int, ...] | None


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
        tpf = grid[0] * grid[1]
        shape = (num_layers, batch_size, config.capacity, tpf, num_heads, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self._k_rot = torch.zeros(shape, device=device, dtype=dtype)
        self.reset()

    # -- state ---------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.slot_frame: list[int] = [-1] * self.config.capacity
        self.frames_written = 0
        self.version = 0
        self._positions: torch.Tensor | None = None
        self._rot_version = [-1] * self.k.shape[0]

    @property
    def num_valid(self) -> int:
        return min(self.frames_written, self.config.capacity)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self._k_rot))

    def _window_base(self) -> int:
        """Smallest absolute frame index among the valid window slots (``S`` while nothing was evicted)."""
        s = self.config.sink_frames if self.config.mode == "rolling" else 0
        window = self.slot_frame[s : self.num_valid]
        return min(window) if window else s

    def _relative(self, frame: int) -> int:
        if self.config.mode == "global":
            return frame
        s = self.config.sink_frames
        return frame if frame < s else s + frame - self._window_base()

    # -- planning and writing ------------------------------------------------------------------------------
    def plan(self, num_frames: int, write: bool) -> WritePlan:
        """Positions (and slots, when ``write``) of the next ``num_frames`` frames, from the state before them."""
        cfg = self.config
        if cfg.mode == "rolling" and num_frames > cfg.window_frames:
            raise ValueError(
                f"a chunk of {num_frames} frames does not fit a rolling window of {cfg.window_frames} frames: "
                "use window_frames >= the chunk size"
            )
        frames = tuple(range(self.frames_written, self.frames_written + num_frames))
        positions = tuple(self._relative(f) for f in frames)
        if max(positions) >= self.rope.max_positions:
            raise ValueError(
                f"frame {frames[-1]} would sit at RoPE position {max(positions)} >= {self.rope.max_positions}: "
                "a global cache cannot go further; use CacheConfig(mode='rolling')"
            )
        slots = None
        if write:
            if cfg.mode == "global" and frames[-1] >= cfg.capacity:
                raise ValueError(
                    f"global KV cache is full ({cfg.capacity} frames): raise max_frames or use mode='rolling'"
                )
            slots = tuple(self._slot_for(f) for f in frames)
        return WritePlan(frames, positions, slots)

    def _slot_for(self, frame: int) -> int:
        cfg = self.config
        if cfg.mode == "global" or frame < cfg.sink_frames:
            return frame
        return cfg.sink_frames + (frame - cfg.sink_frames) % cfg.window_frames

    def write(self, layer: int, plan: WritePlan, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store one layer's un-rotated ``k, v`` ``[B, F * tokens_per_frame, H, D]`` for the planned frames."""
        assert plan.slots is not None, "plan was made with write=False"
        b, _, h, d = k.shape
        kf = k.reshape(b, len(plan.slots), -1, h, d)
        vf = v.reshape(b, len(plan.slots), -1, h, d)
        for i, slot in enumerate(plan.slots):
            self.k[layer, :, slot] = kf[:, i]
            self.v[layer, :, slot] = vf[:, i]

    def commit(self, plan: WritePlan) -> None:
        """Mark the planned frames as cached, after every layer has written them."""
        assert plan.slots is not None
        for f, slot in zip(plan.frames, plan.slots):
            self.slot_frame[slot] = f
        self.frames_written = plan.frames[-1] + 1
        self.version += 1
        self._positions = None

    # -- reading -------------------------------------------------------------------------------------------
    def slot_positions(self) -> torch.Tensor:
        """Cache-relative RoPE position of each valid slot, ``[num_valid]``."""
        if self._positions is None:
            pos = [self._relative(f) for f in self.slot_frame[: self.num_valid]]
            self._positions = torch.tensor(pos, dtype=torch.long, device=self.k.device)
        return self._positions

    def keys_values(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values of the valid slots: ``[B, num_valid * tokens_per_frame, H, D]`` each."""
        n = self.num_valid
        b, _, tpf, h, d = self.k.shape[1:]
        if self._rot_version[layer] != self.version:
            if n:
                cos, sin = self.rope.cos_sin(self.slot_positions(), *self.grid)
                rot = apply_rope(self.k[layer, :, :n].reshape(b, n * tpf, h, d), cos, sin)
                self._k_rot[layer, :, :n] = rot.reshape(b, n, tpf, h, d)
            self._rot_version[layer] = self.version
        k = self._k_rot[layer, :, :n].reshape(b, n * tpf, h, d)
        v = self.v[layer, :, :n].reshape(b, n * tpf, h, d)
        return k, v
