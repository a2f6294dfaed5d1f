"""Replay: the model and the real game start from the same real frame and get the same actions; score the frames.

For each of ``clips`` clips on the held-out (val) maps:

1. the real game plays, in a fresh process, a random start + a short exploration prefix (so the start frame is
   somewhere inside the level), then ``horizon`` actions: either the exploration policy's own (``recorded``) or a
   scripted pattern (``scripted:<name>``, see :mod:`~distillation.evaluation.patterns`);
2. the model gets the real start frame, its caption and the same actions;
3. PSNR and SSIM (:mod:`distillation.training.metrics`) of every generated frame against the real one, and
   the sharpness ratio and Fréchet distance of the generated frames against the real frames of the same clips
   (:mod:`~distillation.evaluation.realism`).

Horizon indexing: frame ``f`` of a clip belongs to horizon step ``ceil(f / 4)``: step 0 is the start frame
alone (how the model reproduces it), step ``j >= 1`` is the 4 frames ``4j-3 .. 4j`` that answer action ``j - 1``.
A per-step score is the mean of its frames' scores; clip-level means use steps 1..n (frame 0 excluded), and
``first16`` averages frames 1..16 (the first 4 latent frames, the teacher's target window).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillation.data.splits import MapSplit
from distillation.evaluation.game import RealClip, record_clip, step_displacement
from distillation.evaluation.models import WorldModelUnderTest
from distillation.evaluation.patterns import MOVE_DIRECTIONS, PATTERNS, check_patterns, scripted_actions
from distillation.evaluation.probe import Probe, ProbeAccuracy, controllability, scorable
from distillation.evaluation.realism import RealismScores
from distillation.training.metrics import MAX_PSNR, psnr, ssim
from lingbot_env.doom.game import DoomConfig
from world_model.world import video_to_tensor

RECORDED = "recorded"
WALK_PER_STEP = 50.0  # map units a walking player covers per step (about 40-60 once up to speed)
ROOM_STEPS = 6  # walking patterns start with room for this many steps (whole 16-step walks rarely fit a room)


@dataclass(frozen=True)
class ReplayConfig:
    """What is replayed.

    Args:
        clips: number of clips (>= 100 for a reported result). horizon: actions per clip (>= 1).
        batch_size: clips per model call. split: maps the clips come from ("val" = held out from training).
        recorded_fraction: share of clips driven by the exploration policy; the rest cycle through ``patterns``.
        prefix_steps: (min, max) exploration steps played after the random start before the start frame.
        seed: seed of everything drawn (episode seeds, prefixes, pattern magnitudes, model sampling).
        keep_clips: clips whose frames are kept for the videos and the contact sheet.
    """

    clips: int = 100
    horizon: int = 16
    batch_size: int = 4
    split: str = "val"
    recorded_fraction: float = 0.5
    patterns: tuple[str, ...] = tuple(PATTERNS)
    prefix_steps: tuple[int, int] = (4, 16)
    seed: int = 0
    keep_clips: int = 4

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ValueError(f"clips must be >= 1, got {self.clips}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 (actions per clip), got {self.horizon}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.recorded_fraction <= 1.0:
            raise ValueError(f"recorded_fraction must be in [0, 1], got {self.recorded_fraction}")
        if self.recorded_fraction < 1.0 and not self.patterns:
            raise ValueError("scripted clips need at least one pattern (or recorded_fraction=1)")
        object.__setattr__(self, "patterns", check_patterns(self.patterns))
        lo, hi = self.prefix_steps
        if not 0 <= lo <= hi:
            raise ValueError(f"prefix_steps must be (min, max) with 0 <= min <= max, got {self.prefix_steps}")
        if self.keep_clips < 0:
            raise ValueError(f"keep_clips must be >= 0, got {self.keep_clips}")

    def source(self, i: int) -> str:
        """Source of clip ``i``: recorded and scripted clips interleave evenly; patterns take turns."""
        f = self.recorded_fraction
        if int((i + 1) * f) > int(i * f):
            return RECORDED
        scripted_before = i - int(i * f)
        return "scripted:" + self.patterns[scripted_before % len(self.patterns)]


def real_clip(cfg: ReplayConfig, game: DoomConfig, maps: tuple[str, ...], i: int, attempts: int = 40) -> RealClip:
    """Clip ``i`` of the replay set: a pure function of ``cfg.seed`` and ``i``.

    A new episode seed is drawn when an episode ends before the clip is complete, and, for the first half of the
    attempts, when a walking pattern would start facing a wall (less than ``ROOM_STEPS`` steps of room).
    """
    source = cfg.source(i)
    pattern = None if source == RECORDED else source.split(":", 1)[1]
    map_name = maps[i % len(maps)]  # maps take turns so every held-out map is scored equally often
    for attempt in range(attempts):
        rng = np.random.default_rng([cfg.seed, i, attempt])
        seed = int(rng.integers(0, 2**31 - 1))
        prefix = int(rng.integers(cfg.prefix_steps[0], cfg.prefix_steps[1] + 1))
        actions = None if pattern is None else scripted_actions(pattern, cfg.horizon, rng)
        need = None
        if pattern in MOVE_DIRECTIONS and attempt < attempts // 2:
            need = (MOVE_DIRECTIONS[pattern], WALK_PER_STEP * min(cfg.horizon, ROOM_STEPS))
        clip = record_clip(game, map_name, seed, prefix, actions, cfg.horizon, source, need)
        if clip is not None:
            return clip
    raise RuntimeError(f"{attempts} episodes on {map_name} ended before a {cfg.horizon}-step clip was complete")


def frame_metrics(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR (dB, capped at ``MAX_PSNR``) and SSIM of ``generated`` vs ``real`` (uint8 [B, F, H, W, 3]) -> [B, F]."""
    if real.shape != generated.shape:
        raise ValueError(f"generated frames {generated.shape} do not match the real ones {real.shape}")
    r, g = video_to_tensor(real), video_to_tensor(generated)
    return psnr(g, r).double().numpy(), ssim(g, r).double().numpy()


def per_step(per_frame: np.ndarray) -> np.ndarray:
    """Per-frame scores [N, 1 + 4n] -> per horizon step [N, n + 1] (step 0 = frame 0, step j = frames 4j-3..4j)."""
    n = (per_frame.shape[1] - 1) // 4
    steps = per_frame[:, 1:].reshape(per_frame.shape[0], n, 4).mean(-1)
    return np.concatenate([per_frame[:, :1], steps], axis=1)


def _stats(per_frame: np.ndarray) -> dict[str, Any]:
    steps = per_step(per_frame)
    n = max(len(per_frame), 1)
    return {
        "mean": float(steps[:, 1:].mean()),
        "first16": float(per_frame[:, 1:17].mean()),
        "last_step": float(steps[:, -1].mean()),
        "start_frame": float(steps[:, 0].mean()),
        "per_step": {
            "mean": steps.mean(0).tolist(),
            "std": steps.std(0).tolist(),
            "sem": (steps.std(0) / np.sqrt(n)).tolist(),
        },
        "per_frame_mean": per_frame.mean(0).tolist(),
    }


@dataclass
class KeptClip:
    """A clip kept for the videos: real and generated uint8 [1 + 4n, H, W, 3]."""

    real: np.ndarray
    generated: np.ndarray
    source: str
    caption: str
    map: str
    psnr: float


@dataclass
class ReplayResult:
    """Per-clip scores (``psnr``/``ssim`` [N, 1 + 4n] per frame) and their descriptions, plus kept clips."""

    config: ReplayConfig
    psnr: np.ndarray
    ssim: np.ndarray
    sources: list[str]
    maps: list[str]
    seeds: list[int]
    prefix_steps: list[int]
    captions: list[str]
    kept: list[KeptClip] = field(default_factory=list)
    controllability: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    realism: dict[str, Any] | None = None  # sharpness ratios and Fréchet distances (see realism.py)
    realism_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per-clip energies and features
    teacher_forced_psnr: np.ndarray | None = None  # [N, 1 + 4n]: next-step prediction from real past frames

    def summary(self) -> dict[str, Any]:
        """The report's ``replay`` section (see the module docstring for what each number averages)."""
        by_source: dict[str, Any] = {}
        sources = np.array(self.sources)
        for name in sorted(set(self.sources)):
            rows = sources == name
            p, s = self.psnr[rows], self.ssim[rows]
            by_source[name] = {
                "clips": int(rows.sum()),
                "psnr_mean": float(per_step(p)[:, 1:].mean()),
                "ssim_mean": float(per_step(s)[:, 1:].mean()),
                "psnr_per_step": per_step(p).mean(0).tolist(),
                "ssim_per_step": per_step(s).mean(0).tolist(),
            }
        generated_frames = self.psnr.shape[0] * (self.psnr.shape[1] - 1)
        return {
            "clips": int(self.psnr.shape[0]),
            "horizon": int(self.config.horizon),
            "split": self.config.split,
            "maps": dict(Counter(self.maps)),
            "psnr_cap": MAX_PSNR,
            "psnr": _stats(self.psnr),
            "ssim": _stats(self.ssim),
            "teacher_forced_psnr": None if self.teacher_forced_psnr is None else _stats(self.teacher_forced_psnr),
            "by_source": by_source,
            "seconds": self.seconds,
            "model_frames_per_second": generated_frames / max(self.seconds.get("model", 0.0), 1e-9),
        }


def run_replay(
    model: WorldModelUnderTest,
    cfg: ReplayConfig,
    game: DoomConfig,
    maps: MapSplit | None = None,
    probe: Probe | None = None,
    progress: bool = True,
    features: Any | None = None,
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    teacher_forced: bool = False,
) -> ReplayResult:
    """Replay ``cfg.clips`` clips in ``model`` and the game (``game.output_size`` must be the model's frame size).

    ``features``: a :class:`~distillation.evaluation.features.FrameFeatures` for the Fréchet distance (None: not
    measured). ``reference(real, generated)``: the real clips through the model's own decoder, the second
    denominator of the sharpness ratio (see :func:`~distillation.evaluation.models.decoder_reference`).
    ``teacher_forced``: also score next-step prediction from the real past frames (causal models with a
    ``teacher_forced`` method; GameNGen's measure), the same clips, frame by frame.
    """
    from tqdm.auto import tqdm

    if tuple(game.output_size) != tuple(model.frame_size):
        raise ValueError(f"the game's frames ({game.output_size}) differ from the model's ({model.frame_size})")
    maps = maps or MapSplit(game.wad)
    split_maps = maps.maps(cfg.split)
    if teacher_forced and not callable(getattr(model, "teacher_forced", None)):
        raise ValueError(f"{model.name} cannot be teacher-forced (only causal streaming worlds can)")
    psnrs, ssims, kept, tf_psnrs = [], [], [], []
    meta: dict[str, list] = {"sources": [], "maps": [], "seeds": [], "prefix_steps": [], "captions": []}
    real_acc = gen_acc = None
    if probe is not None:
        real_acc = ProbeAccuracy(cfg.horizon, probe.config.dead_zone)
        gen_acc = ProbeAccuracy(cfg.horizon, probe.config.dead_zone)
    realism = RealismScores(features)
    t_game = t_model = t_score = t_realism = 0.0
    bar = tqdm(total=cfg.clips, desc=f"replay {model.name}", unit="clip", disable=not progress)
    for lo in range(0, cfg.clips, cfg.batch_size):
        t0 = time.perf_counter()
        clips = [real_clip(cfg, game, split_maps, i) for i in range(lo, min(lo + cfg.batch_size, cfg.clips))]
        t1 = time.perf_counter()
        real = np.stack([c.frames for c in clips])
        actions = np.stack([c.actions for c in clips])
        seeds = [cfg.seed * 100_003 + lo + k for k in range(len(clips))]
        generated = model.generate(
            real[:, 0], [c.caption for c in clips], actions, starts=[c.start for c in clips], seeds=seeds
        )
        t2 = time.perf_counter()
        if generated.shape != real.shape or generated.dtype != np.uint8:
            raise ValueError(f"{model.name} returned {generated.dtype} {generated.shape}, expected uint8 {real.shape}")
        p, s = frame_metrics(real, generated)
        if teacher_forced:
            forced = model.teacher_forced(real, [c.caption for c in clips], actions, seeds=seeds)
            tf_psnrs.append(frame_metrics(real, forced)[0])
        psnrs.append(p)
        ssims.append(s)
        if probe is not None:
            mask = scorable(actions, np.stack([step_displacement(c.poses) for c in clips]))
            real_acc.update(*probe.predict(real), actions, mask)
            gen_acc.update(*probe.predict(generated), actions, mask)
        t3 = time.perf_counter()
        realism.update(real, generated, None if reference is None else reference(real, generated))
        t4 = time.perf_counter()
        for k, c in enumerate(clips):
            meta["sources"].append(c.source)
            meta["maps"].append(c.start.map)
            meta["seeds"].append(c.start.seed)
            meta["prefix_steps"].append(len(c.start.prefix))
            meta["captions"].append(c.caption)
            if len(kept) < cfg.keep_clips:
                kept.append(KeptClip(c.frames, generated[k], c.source, c.caption, c.start.map, float(p[k, 1:].mean())))
        t_game, t_model, t_score = t_game + t1 - t0, t_model + t2 - t1, t_score + t3 - t2
        t_realism += t4 - t3
        bar.update(len(clips))
        bar.set_postfix(psnr=f"{np.concatenate(psnrs)[:, 1:].mean():.2f}")
    bar.close()
    result = ReplayResult(
        cfg,
        np.concatenate(psnrs),
        np.concatenate(ssims),
        kept=kept,
        seconds={"game": t_game, "model": t_model, "scoring": t_score, "realism": t_realism},
        realism=realism.summary(groups=meta["maps"]),
        realism_arrays=realism.arrays(),
        teacher_forced_psnr=np.concatenate(tf_psnrs) if tf_psnrs else None,
        **meta,
    )
    if probe is not None:
        result.controllability = controllability(real_acc, gen_acc, probe)
    return result
