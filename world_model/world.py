"""An interactive world: image + prompt in, then video frames out for every action, one latent chunk per step.

:class:`InteractiveWorld` wires the pieces together and keeps Gym out of them:

* the VAE encoder turns the start images into the first latent frame;
* the text encoder embeds each prompt once (cross-attention K/V cached by the generator);
* :class:`~world_model.control.ActionControl` turns ``[W, A, S, D, yaw, pitch]`` into the control map;
* :class:`~world_model.streaming.StreamingGenerator` makes one chunk of latents per step against its KV cache;
* a :class:`~world_model.vae.StreamingDecoder` (full Wan decoder or the light one) turns them into frames.

Every row of the batch is its own world: :meth:`reset` with ``rows`` restarts some of them while the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from world_model.control import ActionControl, ActionControlConfig
from world_model.dit import WanDiT
from world_model.streaming import StreamConfig, StreamingGenerator
from world_model.vae import FeatureCache, StreamingDecoder


@dataclass(frozen=True)
class WorldSpec:
    """What a world needs besides weights: frame size, frame rate, how actions and chunks work."""

    height: int
    width: int
    fps: float = 16.0
    control: ActionControlConfig | None = None  # None: the model has no control layers
    stream: StreamConfig = field(default_factory=StreamConfig)
    default_prompt: str = ""

    def __post_init__(self) -> None:
        if self.height % 16 or self.width % 16:
            raise ValueError(f"world size {self.height}x{self.width} must be a multiple of 16 (VAE 8 x DiT patch 2)")

    @property
    def frames_per_step(self) -> int:
        return 4 * self.stream.block_frames


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 [n, H, W, 3]`` -> ``float32 [n, 3, H, W]`` in [-1, 1] on ``device`` (what :meth:`InteractiveWorld.reset`
    takes; the inverse of :func:`to_uint8`). The bytes travel as uint8 and are converted there."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def video_to_tensor(video: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 [B, F, H, W, 3]`` -> ``float32 [B, 3, F, H, W]`` in [-1, 1] on ``device`` (converted there), the
    layout of the VAE and the metrics."""
    x = video if torch.is_tensor(video) else torch.from_numpy(np.ascontiguousarray(video))
    return x.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` in [-1, 1] -> ``[B, F, H, W, 3]`` uint8 (on the CPU)."""
    # contiguous before the copy: the channels-last reorder runs on the device, and the host gets one dense block
    # (a permuted CPU array made every later slice of it a strided gather, ~150 MB per step at 1024 envs)
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous().cpu()


class NonFiniteError(RuntimeError):
    """A step (or reset) produced NaN / inf latents or frames: nothing is returned for it. The message names the
    step; the usual cause is corrupt or diverged weights."""


def _all_finite(x: torch.Tensor) -> bool:
    """True iff every element of ``x`` is finite: its sum (one reduction, no temporary), confirmed element-wise only
    when the sum is not finite (an overflow of finite values is not an error)."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


class InteractiveWorld:
    """A batch of ``batch_size`` generated worlds driven by actions.

    Args:
        dit: the causal student (or any :class:`WanDiT`; streaming attention is used).
        encoder: a model with ``encode(video [B, 3, 1, H, W]) -> [B, 16, 1, H/8, W/8]`` (``WanVAE``).
        decoder: a model with ``decode_tensors`` (``WanVAE`` or ``LightDecoder``), streamed.
        text_encoder: ``encode(list[str]) -> list[[L, text_dim]]`` (see ``world_model.checkpoints``).
        spec: :class:`WorldSpec`.
    """

    def __init__(
        self, dit: WanDiT, encoder, decoder, text_encoder, spec: WorldSpec, batch_size: int = 1, seed: int = 0
    ) -> None:
        if (dit.cfg.control_dim is None) != (spec.control is None):
            raise ValueError("spec.control must be given exactly when the DiT has control layers")
        if spec.control is not None and (spec.control.height, spec.control.width) != (spec.height, spec.width):
            raise ValueError("spec.control size differs from the world size")
        self.dit, self.encoder, self.decoder, self.text_encoder = dit, encoder, decoder, text_encoder
        self.spec = spec
        self.batch_size = batch_size
        self.generator = StreamingGenerator(dit, spec.stream, seed=seed)
        self.control = ActionControl(spec.control, batch_size) if spec.control is not None else None
        self.decoder_stream = StreamingDecoder(decoder)
        self.steps = [0] * batch_size
        self.start_image: np.ndarray | None = None  # uint8 [H, W, 3] used by reset() without an image
        self.notes: dict = {}  # provenance (training steps, metrics) from the bundle
        self.heads = None  # optional StepHeads (world_model.heads): the bundle's learned reward / termination
        # The last latent frame of every row before and after the latest step [B, 16, h, w]: what the heads read.
        self.previous_latent: torch.Tensor | None = None
        self.latest_latent: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.dit.device

    @property
    def overlap_cache_pass(self) -> bool:
        """Whether a step's cache pass runs beside its decode (CUDA: on a second stream) instead of before it.

        The frames are the same (``StreamingGenerator(overlap=True)``); only where the cache pass's time is
        counted moves: on CPU it runs at the start of the next step, inside that step's ``generate_ms``; on CUDA it
        runs while the host waits for the decoded frames, inside ``decode_ms``. Compare ``step_ms``. Off by
        default: it pays only where neither fills the GPU alone (at the 1.3B shape on an H100: x1.01, README)."""
        return self.generator.overlap

    @overlap_cache_pass.setter
    def overlap_cache_pass(self, on: bool) -> None:
        self.generator.flush()
        self.generator.overlap = bool(on)

    def _context(self, prompts: Sequence[str]) -> torch.Tensor:
        feats = self.text_encoder.encode(list(prompts))
        length = max(f.shape[0] for f in feats)
        ctx = torch.zeros(len(feats), max(length, 1), feats[0].shape[-1])
        for i, f in enumerate(feats):
            ctx[i, : f.shape[0]] = f.float().cpu()
        return ctx.to(self.device, self.dit.dtype)

    @torch.no_grad()
    def reset(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        seeds: Sequence[int] | None = None,
        rows: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Start worlds from ``images`` ``[n, 3, H, W]`` in [-1, 1] (n = len(rows), default all rows).

        Returns the decoded first frames ``[n, 1, H, W, 3]`` uint8 (the VAE's reconstruction of the images).
        """
        spec = self.spec
        all_rows = rows is None
        rows = list(range(self.batch_size)) if rows is None else [int(r) for r in rows]
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (spec.height, spec.width):
            raise ValueError(
                f"images must be [n, 3, {spec.height}, {spec.width}] in [-1, 1], got {tuple(images.shape)}"
            )
        if len(prompts) != len(rows) or images.shape[0] != len(rows):
            raise ValueError(f"got {images.shape[0]} images and {len(prompts)} prompts for {len(rows)} worlds")
        video = images.to(self.device, torch.float32)[:, :, None]
        latent = self.encoder.encode(video.to(next(self.encoder.parameters()).dtype)).float()
        self._check_finite(latent, "the VAE encoder's latents of the start image", "reset", rows)
        ctx = self._context(prompts)
        ctrl0 = None
        if self.control is not None:
            self.control.reset(rows)
            ctrl0 = self.control.identity(len(rows)).to(self.device)
        if spec.stream.first_block_frames != 1:
            ctrl0 = None  # LingBot Fast layout: frame 0 is generated with the first chunk, not written alone
        if all_rows:
            self.generator.prime(latent, ctx, control=ctrl0, seeds=seeds)
        elif spec.stream.first_block_frames != 1:
            raise ValueError("restarting single rows needs first_block_frames=1 (the image written alone as context)")
        else:
            self.generator.prime_rows(rows, latent, ctx, control=ctrl0, seeds=seeds)
        for r in rows:
            self.steps[r] = 0
        if all_rows:
            self.latest_latent = latent[:, :, -1].clone()
        elif self.latest_latent is not None:
            self.latest_latent[rows] = latent[:, :, -1]
        # Decode latent frame 0 of the new rows on a fresh decoder state, then splice their state in.
        fresh = StreamingDecoder(self.decoder)
        first = fresh(latent.to(self._decoder_dtype()))
        self._check_finite(first, "the decoded start frame", "reset", rows)
        if all_rows:
            self.decoder_stream.state = fresh.state
        else:
            old, new = self.decoder_stream.state, fresh.state
            parts = [new.select(rows.index(b)) if b in rows else old.select(b) for b in range(self.batch_size)]
            self.decoder_stream.state = FeatureCache.cat(parts)
        return to_uint8(first)

    def _decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    def _check_finite(self, x: torch.Tensor, what: str, when: str, rows: Sequence[int] | None = None) -> None:
        """Raise :class:`NonFiniteError` naming the step when ``x`` holds NaN / inf (once per step, cheap)."""
        if _all_finite(x):
            return
        rows = list(range(self.batch_size)) if rows is None else list(rows)
        flat = x.reshape(x.shape[0], -1)
        bad = [r for r, ok in zip(rows, torch.isfinite(flat).all(dim=1).tolist()) if not ok] or rows
        at = "reset" if when == "reset" else ", ".join(f"step {n}" for n in sorted({self.steps[r] + 1 for r in bad}))
        rows_txt = f" (batch rows {bad})" if self.batch_size > 1 else ""
        raise NonFiniteError(
            f"{at}{rows_txt}: NaN or inf in {what}, so no frame is returned. The weights are corrupt or have "
            "diverged (a world bundle checks its files' SHA-256 at load; a checkpoint without digests is checked "
            "for finite weights), or the dtype overflows (try dtype='float32'). Reset the env to continue."
        )

    @torch.no_grad()
    def step(
        self, actions: torch.Tensor, context_latents: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Advance every world by one chunk with ``actions`` ``[B, 6]`` (held for the whole chunk).

        ``context_latents`` ``[B, 16, block_frames, h, w]``: teacher forcing (evaluation): the world goes on from
        these latents (e.g. the real clip's, VAE-encoded) instead of the generated ones, in the DiT's cache and
        in the decoder's state alike; the frames returned are still the generated ones, decoded from the same
        state. Frame-wise worlds only (``first_block_frames == 1``).

        Returns ``frames [B, 4 * block_frames, H, W, 3]`` uint8 and timings in milliseconds.
        """
        if not self.generator.primed:
            raise RuntimeError("reset() the world before step()")
        if context_latents is not None and self.spec.stream.first_block_frames != 1:
            raise ValueError("teacher forcing (context_latents) needs a frame-wise world (first_block_frames=1)")
        t0 = time.perf_counter()
        k = self.spec.stream.block_frames
        control = None
        if self.control is not None:
            actions = torch.as_tensor(actions, dtype=torch.float32)
            if actions.shape != (self.batch_size, 6):
                raise ValueError(f"actions must be [{self.batch_size}, 6], got {tuple(actions.shape)}")
        regenerates_first = self.spec.stream.first_block_frames != 1 and self.generator.frames_generated[0] == 0
        if self.control is not None:
            # LingBot Fast's first chunk regenerates the image's latent frame: it keeps the image's (identity)
            # pose, and the action moves the camera over the chunk's other k - 1 latent frames only.
            moving = k - 1 if regenerates_first else k
            control = self.control(actions[:, None].expand(-1, moving, -1))
            if regenerates_first:
                control = torch.cat([self.control.identity(), control], dim=2)
            control = control.to(self.device)
        if context_latents is not None:
            context_latents = context_latents.to(self.device, torch.float32)
        latents = self.generator.step(control, context=context_latents)
        self._check_finite(latents, "the DiT's latents", "step")
        self.previous_latent, self.latest_latent = self.latest_latent, latents[:, :, -1].float()
        if regenerates_first:  # LingBot Fast layout: the decoder already holds the image as latent frame 0
            latents = latents[:, :, 1:]
        t1 = time.perf_counter()
        if context_latents is None:
            video = self.decoder_stream(latents.to(self._decoder_dtype()))
        else:  # the generated frames on a branch of the decoder's state; the state itself goes on from the context
            video = self.decoder_stream.copy()(latents.to(self._decoder_dtype()))
            self.decoder_stream(context_latents.to(self._decoder_dtype()))
        self._check_finite(video, "the decoded frames", "step")
        frames = to_uint8(video)
        t2 = time.perf_counter()
        for r in range(self.batch_size):
            self.steps[r] += 1
        return frames, {"generate_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3, "step_ms": (t2 - t0) * 1e3}

    @torch.no_grad()
    def read_heads(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The step heads on the latest step: ``(motion [B, 2] map units, end_logit [B])`` on the CPU for the
        step's ``actions`` ``[B, 6]``; None when the world has no heads."""
        if self.heads is None or self.previous_latent is None:
            return None
        acts = torch.as_tensor(actions, dtype=torch.float32, device=self.latest_latent.device)
        motion, end = self.heads(self.previous_latent, self.latest_latent, acts)
        return motion.float().cpu(), end.float().cpu()

    def close(self) -> None:
        self.generator.reset()
        self.decoder_stream.reset()
