"""The streaming generator: one chunk of latent frames per call, against a KV cache.

It is what an interactive world runs in its loop, and knows nothing about Gym. Typical use::

    gen = StreamingGenerator(dit, StreamConfig(block_frames=1))
    gen.prime(first_latent, context, seeds=[0, 1])    # writes the image frames into the cache
    for control in controls:                          # [B, control_dim*64, block_frames, H, W] each
        latents = gen.step(control)                   # [B, 16, block_frames, H, W], clean

Each ``step`` runs the few-step schedule (denoise, re-noise with fresh noise, ...) on a fresh chunk of noise with
the chunk's camera/action features computed once, then one more pass at ``t = 0`` on the clean result to write its
K/V into the cache. The image condition ``y`` of a frame is mask 1 + the image latent for frame 0 of a stream, and
mask 0 + ``tail_latent`` (zeros unless given) for every later frame.

Every batch row is an independent stream with its own RNG and frame count: :meth:`prime_rows` restarts some rows
while the others go on, and a row gives the same frames whatever else is in the batch.

``overlap=True`` queues each cache pass instead of running it before ``step`` returns, so the caller's next work
(decoding the chunk) runs beside it: on CUDA the pass is issued at once on a second stream (the main stream waits
for it before the cache is used again), elsewhere it runs at the start of the next call that needs the cache. The
same computations on the same inputs: the latents are identical either way (tested); only the order changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from world_model.dit import ControlFeatures, PreparedContext, WanDiT
from world_model.kv_cache import CacheConfig, KVCache
from world_model.sampling import FewStepSchedule

MASK_CHANNELS = 4
CACHE_WRITES = ("clean", "last_pass")


@dataclass(frozen=True)
class StreamConfig:
    """How the student streams.

    ``first_block_frames=1`` (default) writes the conditioning image alone into the cache when a stream is primed
    and then generates ``block_frames`` new frames per step. ``first_block_frames=block_frames`` is LingBot Fast's
    layout: the first step generates frames ``0 .. k-1`` with frame 0 conditioned on the image.

    ``cache_write``: how a generated chunk becomes context. ``"clean"`` (default, what students are trained with):
    one more pass at ``t = 0`` on the clean result writes its K/V. ``"last_pass"``: the last denoising pass writes
    the K/V of its own (still noisy) input, so a chunk costs one pass fewer (4 instead of 5 with 4 steps) but the
    next chunks read context a student never saw unless it was trained so (``distillation.dmd --cache-write
    last_pass``: its rollouts write the cache the same way). Teacher forcing always writes the given clean chunk.
    """

    block_frames: int = 3
    first_block_frames: int = 1
    schedule: FewStepSchedule = field(default_factory=FewStepSchedule.lingbot_fast)
    cache: CacheConfig = field(default_factory=CacheConfig)
    cache_write: str = "clean"

    def __post_init__(self) -> None:
        if self.first_block_frames not in (1, self.block_frames):
            raise ValueError("first_block_frames must be 1 (image as context) or block_frames (LingBot Fast layout)")
        if self.cache_write not in CACHE_WRITES:
            raise ValueError(f"cache_write must be one of {CACHE_WRITES}, got {self.cache_write!r}")


def _as_seeds(seeds: int | Sequence[int] | None, n: int, default: int) -> list[int]:
    if seeds is None:
        return [default + i for i in range(n)]
    if isinstance(seeds, int):
        return [seeds + i for i in range(n)]
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} streams")
    return [int(s) for s in seeds]


class StreamingGenerator:
    """Owns the KV cache, the prompts' cross-attention K/V, the device, dtype and RNGs of a batch of streams."""

    def __init__(
        self,
        dit: WanDiT,
        config: StreamConfig | None = None,
        seed: int = 0,
        cache_dtype: torch.dtype | None = None,
        overlap: bool = False,
    ) -> None:
        self.dit = dit
        self.overlap = overlap  # queue cache passes (see the module docstring); switch it between steps
        self._pending: tuple | None = None  # CPU: the queued cache pass's arguments
        self._side: torch.cuda.Stream | None = None  # CUDA: the stream queued cache passes run on
        # CUDA: what the side stream reads, kept referenced until the main stream has waited for it, so that the
        # caching allocator cannot hand that memory to the main stream while the side stream still reads it.
        self._in_flight: tuple | None = None
        self.config = config or StreamConfig()
        self.seed = seed
        self.cache_dtype = cache_dtype
        self.cache: KVCache | None = None
        self.context: PreparedContext | None = None
        self.generators: list[torch.Generator] = []
        self.frames_generated: list[int] = []

    @property
    def primed(self) -> bool:
        return self.cache is not None

    @property
    def batch_size(self) -> int:
        return len(self.generators)

    def _noise(self, shape: tuple[int, ...], rows: Sequence[int]) -> torch.Tensor:
        """One draw per row from that row's own generator: ``[len(rows), *shape]``."""
        dev = self.dit.device
        return torch.stack([torch.randn(shape, generator=self.generators[r], device=dev) for r in rows])

    def _y(self, num_frames: int, rows: Sequence[int]) -> torch.Tensor | None:
        """Image condition of the next ``num_frames`` frames of ``rows``: ``[len(rows), 20, F, H, W]``."""
        if not self.dit.cfg.cond_dim:
            return None
        _, _, _, h, w = self.first_latent.shape
        n = len(rows)
        mask = torch.zeros(n, MASK_CHANNELS, num_frames, h, w, device=self.first_latent.device)
        lat = self.tail_latent.expand(n, -1, num_frames, h, w).clone()
        for i, r in enumerate(rows):
            if self.frames_generated[r] == 0:
                mask[i, :, 0] = 1
                lat[i, :, 0] = self.first_latent[r, :, 0]
        return torch.cat([mask, lat], dim=1)

    def _check_latent(self, first_latent: torch.Tensor) -> None:
        c = self.dit.cfg.out_dim
        if first_latent.ndim != 5 or first_latent.shape[1] != c or first_latent.shape[2] != 1:
            raise ValueError(f"first_latent must be [B, {c}, 1, H, W], got {tuple(first_latent.shape)}")

    @torch.no_grad()
    def prime(
        self,
        first_latent: torch.Tensor,
        context: torch.Tensor | PreparedContext,
        tail_latent: torch.Tensor | None = None,
        control: torch.Tensor | None = None,
        seeds: int | Sequence[int] | None = None,
    ) -> None:
        """Start a new batch of streams from images.

        Args:
            first_latent: normalised latents of the first frames ``[B, 16, 1, H, W]``.
            context: text features ``[B, L, text_dim]`` (or prepared); embedded and cross-K/V-cached once here.
            tail_latent: latent carried in ``y`` by frames after the first ``[1, 16, 1, H, W]`` (default 0).
            control: control map of frame 0 ``[B, C*64, 1, H, W]`` (only with ``first_block_frames=1``).
            seeds: one per row, or a base seed (row i gets ``seed + i``); default the constructor's seed.
        """
        self._check_latent(first_latent)
        self._pending = None  # a queued pass of the old streams: the cache it would write is replaced here
        self.flush()
        dit = self.dit
        b, _, _, h, w = first_latent.shape
        tail = torch.zeros(1, dit.cfg.out_dim, 1, h, w) if tail_latent is None else tail_latent
        self.tail_latent = tail.to(dit.device, torch.float32)
        self.first_latent = first_latent.to(dit.device, torch.float32).clone()
        self.context = context if isinstance(context, PreparedContext) else dit.prepare_context(context.to(dit.device))
        self.cache = dit.new_kv_cache(self.config.cache, b, (h, w), self.cache_dtype)
        self.generators = [torch.Generator(device=dit.device) for _ in range(b)]
        self.frames_generated = [0] * b
        self._start_rows(tuple(range(b)), _as_seeds(seeds, b, self.seed), control)

    @torch.no_grad()
    def prime_rows(
        self,
        rows: Sequence[int],
        first_latent: torch.Tensor,
        context: torch.Tensor | PreparedContext,
        control: torch.Tensor | None = None,
        seeds: int | Sequence[int] | None = None,
    ) -> None:
        """Restart the streams in ``rows`` (the others go on): ``first_latent`` ``[len(rows), 16, 1, H, W]``,
        ``context`` for those rows."""
        if not self.primed:
            raise RuntimeError("prime() the whole batch before restarting some rows")
        self.flush()  # the queued pass reads the rows' context, which is overwritten below
        rows = tuple(int(r) for r in rows)
        self._check_latent(first_latent)
        if first_latent.shape[0] != len(rows) or first_latent.shape[3:] != self.first_latent.shape[3:]:
            raise ValueError(f"first_latent {tuple(first_latent.shape)} does not match {len(rows)} rows")
        dit = self.dit
        ctx = context if isinstance(context, PreparedContext) else dit.prepare_context(context.to(dit.device))
        idx = torch.tensor(rows, device=dit.device)
        self.context.text[idx] = ctx.text
        for (k, v), (nk, nv) in zip(self.context.kv, ctx.kv):
            k[idx], v[idx] = nk, nv
        self.first_latent[idx] = first_latent.to(dit.device, torch.float32)
        self._start_rows(rows, _as_seeds(seeds, len(rows), self.seed), control)

    def _start_rows(self, rows: tuple[int, ...], seeds: list[int], control) -> None:
        self.cache.reset(rows)
        for r, s in zip(rows, seeds):
            self.generators[r].manual_seed(s)
            self.frames_generated[r] = 0
        if self.config.first_block_frames == 1:
            self._cache_pass(self.first_latent[list(rows)], control, rows)

    def _sub_context(self, rows: tuple[int, ...]) -> PreparedContext:
        if rows == tuple(range(self.batch_size)):
            return self.context
        idx = list(rows)
        return PreparedContext(self.context.text[idx], [(k[idx], v[idx]) for k, v in self.context.kv])

    def _cache_pass(self, clean: torch.Tensor, control, rows: tuple[int, ...]) -> None:
        """Write the clean chunk ``[len(rows), 16, F, H, W]`` of ``rows`` as context: now, or queued (``overlap``).

        Its image condition and the rows' frame counts are taken now, so a queued pass computes what an immediate
        one would."""
        self.flush()
        y = self._y(clean.shape[2], rows)
        self._count(rows, clean.shape[2])
        if not self.overlap:
            self._write(clean, control, rows, y)
        elif self.dit.device.type == "cuda":
            if self._side is None:
                self._side = torch.cuda.Stream(self.dit.device)
            self._side.wait_stream(torch.cuda.current_stream(self.dit.device))  # its inputs are ready
            with torch.cuda.stream(self._side):
                self._write(clean, control, rows, y)
            self._in_flight = (clean, control, y)
        else:
            self._pending = (clean, control, rows, y)

    def flush(self) -> None:
        """Make the cache current: run a queued cache pass (CPU) or order the main stream after it (CUDA). Every
        method that reads or writes the cache calls it first; call it before reading ``cache`` from outside."""
        if self._pending is not None:
            args, self._pending = self._pending, None
            self._write(*args)
        if self._in_flight is not None:
            torch.cuda.current_stream(self.dit.device).wait_stream(self._side)
            self._in_flight = None

    def _write(self, clean: torch.Tensor, control, rows: tuple[int, ...], y: torch.Tensor | None) -> None:
        """The cache pass: run the clean chunk at t = 0 with image condition ``y`` and keep its K/V."""
        t0 = torch.zeros(clean.shape[0], device=clean.device)
        self.dit(
            clean,
            t0,
            self._sub_context(rows),
            y,
            control,
            attention="streaming",
            kv_cache=self.cache,
            write_cache=True,
            cache_rows=None if len(rows) == self.batch_size else rows,
        )

    def _count(self, rows: tuple[int, ...], frames: int) -> None:
        """``frames`` more frames of these rows are in the cache."""
        for r in rows:
            self.frames_generated[r] += frames

    @torch.no_grad()
    def step(self, control: torch.Tensor | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """Generate the next chunk of every stream.

        Args:
            control: the chunk's control map ``[B, control_dim*64, block_frames, H, W]`` (None: no control).
            context: teacher forcing: these clean latents ``[B, 16, block_frames, H, W]`` (e.g. the real clip's)
                are written to the cache as the chunk's context instead of the generated ones, so the next chunk
                is predicted from real past frames (the next-step measure GameNGen reports).
        Returns:
            clean latents ``[B, 16, block_frames, H, W]`` float32 (generated, also with ``context``).
        """
        return self._generate(control, None, context)

    def training_step(self, control: torch.Tensor | None, exit_step: int) -> torch.Tensor:
        """:meth:`step` for training a student on its own rollouts (Self-Forcing): the few-step schedule stops at
        denoising step ``exit_step`` and returns that ``x0`` estimate, the only pass that records gradients (with
        the chunk's control features); the cache pass then writes the detached result. With ``exit_step`` = the
        last step and the same seeds it returns what :meth:`step` returns: training rolls out through the very
        code that inference runs."""
        return self._generate(control, exit_step)

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, control: ControlFeatures | None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One denoising pass of the next chunk ``x`` ``[B, 16, block_frames, H, W]`` at timesteps ``t`` ``[B]``
        against the cache, which it leaves as it is: the flow velocity ``[B, 16, block_frames, H, W]``.
        ``control``: the chunk's prepared features (``dit.prepare_control``); ``y``: the chunk's image condition
        (built here when not given; a chunk's passes share it). Records gradients in grad mode."""
        self.flush()
        if y is None:
            y = self._y(x.shape[2], tuple(range(self.batch_size)))
        return self.dit(x, t, self.context, y, control, attention="streaming", kv_cache=self.cache)

    @torch.no_grad()
    def append(self, clean: torch.Tensor, control: ControlFeatures | torch.Tensor | None) -> None:
        """The cache pass: write the clean chunk ``[B, 16, F, H, W]`` (run at ``t = 0``) as context for the next."""
        self._cache_pass(clean.detach(), control, tuple(range(self.batch_size)))

    def _generate(
        self, control: torch.Tensor | None, exit_step: int | None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.primed:
            raise RuntimeError("call prime(first_latent, context) before step()")
        self.flush()
        dit = self.dit
        _, c, _, h, w = self.first_latent.shape
        rows = tuple(range(self.batch_size))
        shape = (c, self.config.block_frames, h, w)
        ctrl = None if control is None else dit.prepare_control(control.to(dit.device))
        y = self._y(self.config.block_frames, rows)  # once per chunk: every denoising pass of it sees the same
        # A training rollout (exit_step) of a last-pass student goes on past its exit to the last pass, so that
        # its cache (and its noise draws) are what inference would have: only the exit pass keeps gradients.
        from_last_pass = self.config.cache_write == "last_pass" and context is None
        passes = len(self.config.schedule.sigmas)
        done = [0]

        def writing_pass(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            """A denoising pass whose K/V become the chunk's context."""
            return dit(x, t, self.context, y, ctrl, attention="streaming", kv_cache=self.cache, write_cache=True)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            done[0] += 1
            if not (from_last_pass and done[0] == passes):
                return self.velocity(x, t, ctrl, y)
            if not torch.is_grad_enabled():
                return writing_pass(x, t)
            # The exit pass of training: gradients must not reach the cache, so the same pass runs again without
            # them to write it (after, so the pass with gradients does not attend to its own chunk twice).
            v = self.velocity(x, t, ctrl, y)
            with torch.no_grad():
                writing_pass(x.detach(), t)
            return v

        clean = self.config.schedule.sample(
            velocity,
            self._noise(shape, rows),
            noise_fn=lambda: self._noise(shape, rows),
            exit_step=exit_step,
            finish=from_last_pass,
        )
        if context is not None and context.shape != clean.shape:
            raise ValueError(f"context latents must be {tuple(clean.shape)} (the chunk's), got {tuple(context.shape)}")
        if from_last_pass:
            self._count(rows, clean.shape[2])
        else:
            self.append(clean if context is None else context.to(clean), ctrl)
        return clean

    def reset(self) -> None:
        """Forget all streams (frees the cache); call :meth:`prime` again to start over."""
        self._pending = None
        self.flush()
        self.cache = None
        self.context = None
        self.generators = []
        self.frames_generated = []
