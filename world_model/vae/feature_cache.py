"""Explicit streaming state for causal video modules (the Wan VAE and the light decoder).

The official Wan code keeps its temporal cache in a Python list that every layer mutates through a shared
index counter. Here the cache is a value: a tuple of tensors in a fixed layer order, passed into a module's
``step`` and returned, updated, from it. A value can be reset (drop it), copied (clone it), batched (concatenate
two streams along the batch dimension) and traced by ``torch.compile`` without graph breaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Caches = tuple[Tensor, ...]


@dataclass(frozen=True)
class FeatureCache:
    """State of one (possibly batched) causal stream.

    ``tensors`` is None before the first chunk: the module then treats its input as the start of a clip
    (zero padding in front, latent frame 0 / video frame 0 handled specially). After a chunk it holds one tensor
    per cached layer, in the module's fixed layer order; each is ``[B, C, k, H_l, W_l]`` (``k`` = frames the
    layer looks back: 2 for a k_t = 3 causal conv, 1 for a stride-2 time conv) or ``[B, 1, C, H_l, W_l]`` for the
    light decoder's one-frame memories. ``batch`` and ``spatial`` record the input chunk shape the state belongs
    to, so a mismatched chunk is refused with a clear message instead of a deep shape error.
    """

    tensors: Caches | None = None
    batch: int | None = None
    spatial: tuple[int, int] | None = None
    chunks: int = 0

    @property
    def started(self) -> bool:
        return self.tensors is not None

    def copy(self) -> FeatureCache:
        """Independent copy (tensors cloned), e.g. to branch a stream."""
        if self.tensors is None:
            return self
        return FeatureCache(tuple(t.clone() for t in self.tensors), self.batch, self.spatial, self.chunks)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FeatureCache:
        if self.tensors is None:
            return self
        moved = tuple(t.to(device=device, dtype=dtype) for t in self.tensors)
        return FeatureCache(moved, self.batch, self.spatial, self.chunks)

    def select(self, index: int | slice | Tensor) -> FeatureCache:
        """The state of a subset of the batch (``index`` into dim 0), keeping the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        if self.tensors is None:
            return self
        picked = tuple(t[index] for t in self.tensors)
        return FeatureCache(picked, picked[0].shape[0] if picked else self.batch, self.spatial, self.chunks)

    def check_chunk(self, x: Tensor) -> None:
        """Refuse a chunk [B, C, T, H, W] whose batch or spatial size differs from the stream's."""
        if not self.started:
            return
        if self.batch is not None and x.shape[0] != self.batch:
            raise ValueError(
                f"chunk batch {x.shape[0]} does not match the stream's batch {self.batch}; "
                "batch streams with FeatureCache.cat and split them with FeatureCache.select"
            )
        if self.spatial is not None and tuple(x.shape[3:]) != self.spatial:
            raise ValueError(
                f"chunk spatial size {tuple(x.shape[3:])} does not match the stream's {self.spatial}; "
                "reset the state (start a new clip) to change resolution"
            )

    def advanced(self, tensors: Caches, x: Tensor) -> FeatureCache:
        """The state after consuming chunk ``x`` [B, C, T, H, W] and producing cache ``tensors``."""
        return FeatureCache(tensors, x.shape[0], (x.shape[3], x.shape[4]), self.chunks + 1)

    def nbytes(self) -> int:
        if self.tensors is None:
            return 0
        return sum(t.numel() * t.element_size() for t in self.tensors)

    @staticmethod
    def cat(states: Sequence[FeatureCache]) -> FeatureCache:
        """Batch several streams into one (concatenate along the batch dimension).

        All states must be at the same phase (all fresh or all started) because the first chunk of a stream
        emits a different number of frames than later chunks; and at the same resolution.
        """
        if not states:
            raise ValueError("FeatureCache.cat needs at least one state")
        started = {s.started for s in states}
        if len(started) != 1:
            raise ValueError(
                "cannot batch a fresh stream with a started one: the first chunk emits 1 frame for latent frame 0 "
                "and later chunks 4 per latent frame; decode the fresh stream's first chunk on its own first"
            )
        spatial = {s.spatial for s in states if s.spatial is not None}
        if len(spatial) > 1:
            raise ValueError(f"cannot batch streams of different resolutions {sorted(spatial)}")
        if not states[0].started:
            return FeatureCache()
        lengths = {len(s.tensors) for s in states}  # type: ignore[arg-type]
        if len(lengths) != 1:
            raise ValueError("cannot batch states of different models (different numbers of cached layers)")
        tensors = tuple(torch.cat(parts, dim=0) for parts in zip(*(s.tensors for s in states)))  # type: ignore[misc]
        batch = sum(s.batch or 0 for s in states)
        return FeatureCache(tensors, batch, states[0].spatial, max(s.chunks for s in states))


def causal_pad(x: Tensor, cache: Tensor | None, frames: int) -> Tensor:
    """Put ``frames`` frames in front of ``x`` [B, C, T, H, W] along time: the cached frames, or zeros at clip start."""
    if cache is None:
        return F.pad(x, (0, 0, 0, 0, frames, 0))
    return torch.cat([cache, x], dim=2)


def last_frames(x: Tensor, frames: int) -> Tensor:
    """A compact copy of the last ``frames`` frames of ``x`` [B, C, T, H, W] (a view would pin the whole chunk)."""
    return x[:, :, -frames:].clone()


def zero_frames(x: Tensor, frames: int) -> Tensor:
    """``frames`` zero frames shaped like one frame of ``x`` [B, C, T, H, W]; stored as a broadcast view."""
    return torch.zeros_like(x[:, :, :1]).expand(-1, -1, frames, -1, -1)
