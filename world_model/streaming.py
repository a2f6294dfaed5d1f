"""The streaming generator: one chunk of latent frames per call, against a KV cache.

It is what an interactive world runs in its loop, and knows nothing about Gym. Typical use::

    gen = StreamingGenerator(dit, StreamConfig(block_frames=1), seed=0)
    gen.prime(first_latent, context)            # writes the image frame into the cache
    for control in controls:                    # [B, control_dim*64, block_frames, H, W] each
        latents = gen.step(control)             # [B, 16, block_frames, H, W], clean

Each ``step`` runs the few-step schedule (denoise, re-noise with fresh noise, ...) on a fresh chunk of noise with
the chunk's camera/action features computed once, then one more pass at ``t = 0`` on the clean result to write its
K/V into the cache. The image condition ``y`` of a chunk is mask 0 + ``tail_latent`` (zeros unless given) for
every frame but frame 0, which carries mask 1 + the image latent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from world_model.dit import PreparedContext, WanDiT
from world_model.kv_cache import CacheConfig, KVCache
from world_model.sampling import FewStepSchedule

MASK_CHANNELS = 4


@dataclass(frozen=True)
class StreamConfig:
    """How the student streams.

    ``first_block_frames=1`` (default) writes the conditioning image alone into the cache at :meth:`prime` and then
    generates ``block_frames`` new frames per step. ``first_block_frames=block_frames`` is LingBot Fast's layout:
    the first step generates frames ``0 .. k-1`` with frame 0 conditioned on the image.
    """

    block_frames: int = 3
    first_block_frames: int = 1
    schedule: FewStepSchedule = field(default_factory=FewStepSchedule.lingbot_fast)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def __post_init__(self) -> None:
        if self.first_block_frames not in (1, self.block_frames):
            raise ValueError("first_block_frames must be 1 (image as context) or block_frames (LingBot Fast layout)")


class StreamingGenerator:
    """Owns the KV cache, the prompt's cross-attention K/V, the device, dtype and RNG of one batch of streams."""

    def __init__(
        self,
        dit: WanDiT,
        config: StreamConfig | None = None,
        seed: int = 0,
        cache_dtype: torch.dtype | None = None,
    ) -> None:
        self.dit = dit
        self.config = config or StreamConfig()
        self.seed = seed
        self.cache_dtype = cache_dtype
        self.generator = torch.Generator(device=dit.device)
        self.cache: KVCache | None = None
        self.context: PreparedContext | None = None
        self.frames_generated = 0

    @property
    def primed(self) -> bool:
        return self.cache is not None

    def _y(self, num_frames: int, first_frame_index: int) -> torch.Tensor | None:
        """Image condition for frames ``first_frame_index ..``: ``[B, 20, F, H, W]`` (None for T2V models)."""
        if not self.dit.cfg.cond_dim:
            return None
        b, _, _, h, w = self.first_latent.shape
        mask = torch.zeros(b, MASK_CHANNELS, num_frames, h, w, device=self.first_latent.device)
        lat = self.tail_latent.expand(b, -1, num_frames, h, w).clone()
        if first_frame_index == 0:
            mask[:, :, 0] = 1
            lat[:, :, 0] = self.first_latent[:, :, 0]
        return torch.cat([mask, lat], dim=1)

    @torch.no_grad()
    def prime(
        self,
        first_latent: torch.Tensor,
        context: torch.Tensor | PreparedContext,
        tail_latent: torch.Tensor | None = None,
        control: torch.Tensor | None = None,
        seed: int | None = None,
    ) -> None:
        """Start new streams from an image.

        Args:
            first_latent: normalised latent of the first frame ``[B, 16, 1, H, W]``.
            context: text features ``[B, L, text_dim]`` (or prepared); embedded and cross-K/V-cached once here.
            tail_latent: latent carried in ``y`` by frames after the first ``[B or 1, 16, 1, H, W]`` (default 0).
            control: control map of frame 0 ``[B, C*64, 1, H, W]`` (only with ``first_block_frames=1``).
            seed: reseeds the noise RNG (default: the constructor's seed).
        """
        dit, cfg = self.dit, self.config
        if first_latent.ndim != 5 or first_latent.shape[1] != dit.cfg.out_dim or first_latent.shape[2] != 1:
            raise ValueError(f"first_latent must be [B, {dit.cfg.out_dim}, 1, H, W], got {tuple(first_latent.shape)}")
        self.first_latent = first_latent.to(dit.device, torch.float32)
        b, _, _, h, w = first_latent.shape
        tail = torch.zeros(1, dit.cfg.out_dim, 1, h, w) if tail_latent is None else tail_latent
        self.tail_latent = tail.to(dit.device, torch.float32)
        self.context = context if isinstance(context, PreparedContext) else dit.prepare_context(context.to(dit.device))
        self.cache = dit.new_kv_cache(cfg.cache, b, (h, w), self.cache_dtype)
        self.generator.manual_seed(self.seed if seed is None else seed)
        self.frames_generated = 0
        if cfg.first_block_frames == 1:
            self._write(self.first_latent, control)
            self.frames_generated = 1

    def _write(self, clean: torch.Tensor, control) -> None:
        """The cache pass: run the clean chunk at t = 0 and keep its K/V."""
        f = clean.shape[2]
        t0 = torch.zeros(clean.shape[0], device=clean.device)
        y = self._y(f, self.frames_generated)
        self.dit(clean, t0, self.context, y, control, attention="streaming", kv_cache=self.cache, write_cache=True)

    @torch.no_grad()
    def step(self, control: torch.Tensor | None = None) -> torch.Tensor:
        """Generate the next chunk.

        Args:
            control: the chunk's control map ``[B, control_dim*64, F_chunk, H, W]`` (None: no control).
        Returns:
            clean latents ``[B, 16, F_chunk, H, W]`` float32, ``F_chunk = block_frames``.
        """
        if not self.primed:
            raise RuntimeError("call prime(first_latent, context) before step()")
        dit, cfg = self.dit, self.config
        b, c, _, h, w = self.first_latent.shape
        f = cfg.block_frames
        ctrl = None if control is None else dit.prepare_control(control.to(dit.device))
        y = self._y(f, self.frames_generated)
        noise = torch.randn((b, c, f, h, w), generator=self.generator, device=dit.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x, t, self.context, y, ctrl, attention="streaming", kv_cache=self.cache, write_cache=False)

        clean = cfg.schedule.sample(velocity, noise, self.generator)
        self._write(clean, ctrl)
        self.frames_generated += f
        return clean

    def reset(self) -> None:
        """Forget the streams (frees the cache); call :meth:`prime` again to start over."""
        self.cache = None
        self.context = None
        self.frames_generated = 0
