"""Stream objects: feed latent frames (or video frames) as they arrive, get frames back, hold the cache.

The object owns nothing but a model reference and a ``FeatureCache`` value. ``state`` can be read, replaced,
copied or batched (``FeatureCache.cat``); ``reset()`` starts a new clip. With ``compile=True`` the pure tensor
step (``decode_tensors`` / ``encode_tensors``) is wrapped in ``torch.compile``: the first chunk and later chunks
trace to two graphs (no cache vs. cache), after which chunks of the same shape reuse them.
"""

from __future__ import annotations

import copy as _copy

import torch
from torch import Tensor

from .feature_cache import FeatureCache
from .validation import check_latents, check_video_chunk


class StreamingDecoder:
    """Decode latents chunk by chunk: latent frame 0 -> 1 frame, every later latent frame -> 4 frames.

    Works with any model exposing ``config.z_dim`` and ``decode_tensors(latents, cache, keep)`` (``WanVAE``,
    ``LightDecoder``). ``decoder(latents [B, z, t, h, w]) -> video [B, 3, f, 8h, 8w]`` with f = 1 + 4(t-1) on the
    first call after ``reset`` and 4t afterwards; the concatenation equals a whole-clip ``decode``.
    """

    def __init__(self, model, state: FeatureCache | None = None, compile: bool = False, **compile_kwargs) -> None:
        self.model = model
        self.state = state or FeatureCache()
        self._step = torch.compile(model.decode_tensors, **compile_kwargs) if compile else model.decode_tensors

    def reset(self) -> None:
        self.state = FeatureCache()

    def copy(self) -> StreamingDecoder:
        """A second stream on the same model (and compiled step) continuing from a copy of this state."""
        other = _copy.copy(self)
        other.state = self.state.copy()
        return other

    def __call__(self, latents: Tensor) -> Tensor:
        check_latents(latents, z_dim=self.model.config.z_dim)
        self.state.check_chunk(latents)
        video, tensors = self._step(latents, self.state.tensors)
        self.state = self.state.advanced(tensors, latents)
        return video


class StreamingEncoder:
    """Encode video chunk by chunk (``WanVAE``): first 1 + 4n frames, then 4n frames per call -> latent frames."""

    def __init__(self, model, state: FeatureCache | None = None, compile: bool = False, **compile_kwargs) -> None:
        self.model = model
        self.state = state or FeatureCache()
        self._step = torch.compile(model.encode_tensors, **compile_kwargs) if compile else model.encode_tensors

    def reset(self) -> None:
        self.state = FeatureCache()

    def copy(self) -> StreamingEncoder:
        other = _copy.copy(self)
        other.state = self.state.copy()
        return other

    def __call__(self, video: Tensor) -> Tensor:
        cfg = self.model.config
        first = not self.state.started
        check_video_chunk(video, first=first, t_factor=cfg.temporal_factor, s_factor=cfg.spatial_factor)
        self.state.check_chunk(video)
        z, tensors = self._step(video, self.state.tensors)
        self.state = self.state.advanced(tensors, video)
        return z
