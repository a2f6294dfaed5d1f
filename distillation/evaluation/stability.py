"""Stability over long rollouts of causal models: does the generated world drift over 1,000 steps?

A rollout starts the model and the real game (fresh process, held-out map) from the same real frame and drives
both with the same actions for ``steps`` steps: the exploration policy acting on the *real* game (so it walks
through the level as a player would), or a scripted pattern. The model never sees a real frame after the first:
this is an open-loop rollout, as in play. Per step (its 4 frames averaged):

- ``brightness``: mean pixel value (0-255) of the generated and of the real frames;
- ``contrast``: standard deviation of the pixel values (0-255) of each frame, generated and real;
- ``psnr`` / ``ssim`` of the generated frames against the real ones;
- with a probe: whether it reads the step's action (keys and turn direction) off the real and off the generated
  frames (``probe_real_joint``, ``probe_gen_joint``), steps whose keys were blocked by a wall left out.

The summary's ``end`` section makes numbers of the last ``end_window`` steps (100): generated over real mean
brightness and contrast, and the probe ratio (generated over real accuracy) there. With a feature network
(``features``), it also gives the Fréchet distance of the generated frames to the real ones over the first and over
the last ``end_window`` steps (every frame, pooled over rollouts), and the real frames' own distance between those
two windows (the scale of "a real view from elsewhere in the level"). A world that has collapsed into a texture can
keep the game's mean brightness and contrast, and even the probe's reading of the actions, but not its features.

A stable model keeps brightness and contrast near the game's over the whole rollout (no fade to grey, no
saturation); PSNR falls as the rollout diverges from the game's trajectory and then flattens at the level of
"a plausible but different view" -- a continuing decline after that is drift. If the real episode ends (the
explorer found the level exit), the rollout stops there (``steps_run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillation.data.splits import MapSplit
from distillation.evaluation.frechet import frechet_distance
from distillation.evaluation.game import EpisodeEnded, explorer, fresh_game, start_episode
from distillation.evaluation.models import CausalWorldModel
from distillation.evaluation.patterns import PATTERNS, scripted_actions
from distillation.evaluation.probe import Probe, scorable, step_scores
from distillation.evaluation.replay import frame_metrics
from lingbot_env.doom.game import DoomConfig

METRICS = ("gen_brightness", "real_brightness", "gen_contrast", "real_contrast", "psnr", "ssim")
PROBE_METRICS = ("probe_real_joint", "probe_gen_joint")  # 1/0 per scorable step, NaN otherwise (with a probe)
FrameSink = Callable[[np.ndarray, np.ndarray, int], None]


@dataclass(frozen=True)
class StabilityConfig:
    """Args: steps per rollout; rollouts (each on the next held-out map); policy: ``"explorer"`` or a pattern
    name (repeated in 16-step blocks); prefix_steps: explorer steps before the start frame; seed; window: steps
    averaged at the start and at the end of a rollout to report drift."""

    steps: int = 1000
    rollouts: int = 1
    policy: str = "explorer"
    split: str = "val"
    prefix_steps: int = 8
    seed: int = 0
    window: int = 50
    end_window: int = 100

    def __post_init__(self) -> None:
        if self.steps < 1 or self.rollouts < 1:
            raise ValueError(f"steps and rollouts must be >= 1, got {self.steps}, {self.rollouts}")
        if self.policy != "explorer" and self.policy not in PATTERNS:
            raise ValueError(f"policy must be 'explorer' or a pattern {sorted(PATTERNS)}, got {self.policy!r}")
        if self.prefix_steps < 0 or self.window < 1:
            raise ValueError("prefix_steps must be >= 0 and window >= 1")


def frame_stats(frames: np.ndarray) -> tuple[float, float]:
    """uint8 [k, H, W, 3] -> (mean brightness, mean per-frame pixel std), both on the 0-255 scale."""
    x = frames.reshape(len(frames), -1).astype(np.float64)
    return float(x.mean()), float(x.std(axis=1).mean())


@dataclass
class StabilityResult:
    """``per_step[name]`` float [rollouts, steps] (NaN after a rollout's end) for each of :data:`METRICS`."""

    config: StabilityConfig
    per_step: dict[str, np.ndarray]
    steps_run: list[int]
    maps: list[str]
    seeds: list[int]
    captions: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # features float32 [frames, dim] of the first / last ``end_window`` steps, pooled over rollouts (with features)
    window_features: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        w = self.config.window
        out: dict[str, Any] = {
            "steps": self.config.steps,
            "steps_run": self.steps_run,
            "policy": self.config.policy,
            "maps": self.maps,
            "seeds": self.seeds,
            "window": w,
            "seconds": self.seconds,
        }
        with np.errstate(all="ignore"):
            out["end"] = self.end_scores()
            for name, arr in self.per_step.items():
                curve = np.nanmean(arr, axis=0)
                # Short rollouts: windows of at most half the steps run, so first and last never overlap.
                first = [np.nanmean(a[: min(w, max(1, n // 2))]) for a, n in zip(arr, self.steps_run) if n]
                last = [np.nanmean(a[n - min(w, max(1, n // 2)) : n]) for a, n in zip(arr, self.steps_run) if n]
                f, la = float(np.mean(first)) if first else None, float(np.mean(last)) if last else None
                out[name] = {
                    "first_window": f,
                    "last_window": la,
                    "drift": None if f is None or la is None else la - f,
                    "per_step": [None if np.isnan(v) else round(float(v), 4) for v in curve],
                }
        return out

    def end_scores(self) -> dict[str, Any]:
        """Over the last ``end_window`` steps each rollout ran (pooled): generated / real mean brightness and mean
        contrast, how much each varies from step to step (generated / real; a collapsed world's means can match
        the game's while it barely changes), and the probe's generated / real accuracy (None without a probe or
        scorable steps)."""
        w = self.config.end_window
        ends = [(r, n) for r, n in enumerate(self.steps_run) if n]

        def pooled(name: str) -> float | None:
            if name not in self.per_step or not ends:
                return None
            vals = np.concatenate([self.per_step[name][r, max(0, n - w) : n] for r, n in ends])
            vals = vals[~np.isnan(vals)]
            return float(vals.mean()) if len(vals) else None

        def ratio(a: str, b: str) -> float | None:
            x, y = pooled(a), pooled(b)
            return None if x is None or not y else x / y

        def variation(a: str, b: str) -> float | None:
            """Mean over rollouts of std over the window of the per-step values, generated / real: a frozen or
            collapsed world changes little from step to step however close its means are (near 0 then)."""
            if a not in self.per_step or b not in self.per_step or not ends:
                return None
            ratios = []
            for r, n in ends:
                ga, rb = self.per_step[a][r, max(0, n - w) : n], self.per_step[b][r, max(0, n - w) : n]
                if np.nanstd(rb) > 0:
                    ratios.append(np.nanstd(ga) / np.nanstd(rb))
            return float(np.mean(ratios)) if ratios else None

        def per_rollout(a: str, b: str) -> list[float | None]:
            """Generated / real mean over each rollout's window: pooled means can hide maps that miss both ways."""
            if a not in self.per_step or b not in self.per_step:
                return []
            out = []
            for r, n in ends:
                x, y = (
                    np.nanmean(self.per_step[a][r, max(0, n - w) : n]),
                    np.nanmean(self.per_step[b][r, max(0, n - w) : n]),
                )
                out.append(None if not y or np.isnan(x) else float(x / y))
            return out

        feats = self.window_features

        def frechet(a: str, b: str) -> float | None:
            if a not in feats or b not in feats or min(len(feats[a]), len(feats[b])) < 2:
                return None
            return frechet_distance(feats[a], feats[b])

        return {
            "steps": [f"{max(0, n - w)}-{n}" for _, n in ends],
            "frechet_end": frechet("gen_end", "real_end"),
            "frechet_start": frechet("gen_start", "real_start"),
            "frechet_real_start_vs_end": frechet("real_start", "real_end"),
            "brightness_ratio_per_rollout": per_rollout("gen_brightness", "real_brightness"),
            "contrast_ratio_per_rollout": per_rollout("gen_contrast", "real_contrast"),
            "brightness_ratio": ratio("gen_brightness", "real_brightness"),
            "brightness_variation_ratio": variation("gen_brightness", "real_brightness"),
            "contrast_variation_ratio": variation("gen_contrast", "real_contrast"),
            "contrast_ratio": ratio("gen_contrast", "real_contrast"),
            "probe_real": pooled("probe_real_joint"),
            "probe_generated": pooled("probe_gen_joint"),
            "probe_ratio": ratio("probe_gen_joint", "probe_real_joint"),
        }


def _scripted(cfg: StabilityConfig, seed: int) -> Callable[[int], np.ndarray]:
    """Pattern actions for a rollout: ``act(step) -> float32 [6]``, fresh 16-step blocks of ``cfg.policy``."""
    rng = np.random.default_rng([cfg.seed, seed, 3])
    block: list[np.ndarray] = []

    def act(t: int) -> np.ndarray:
        if t % 16 == 0:
            block[:] = list(scripted_actions(cfg.policy, 16, rng))
        return block[t % 16]

    return act


def probe_step(probe: Probe, prev_real, real, prev_gen, gen, action, walked: float) -> tuple[float, float]:
    """Whether the probe reads ``action`` [6] (keys and turn direction, jointly) off the real and off the generated
    step (``real``/``gen`` uint8 [4, H, W, 3] after the previous frames ``prev_*`` [H, W, 3]): 1.0 / 0.0 each, or
    NaN for both when the keys moved the real player (``walked`` map units) less than the probe can see."""
    actions = np.asarray(action, np.float32)[None, None]
    if not scorable(actions, np.array([[walked]]))[0, 0]:
        return float("nan"), float("nan")
    clips = np.stack([np.concatenate([prev_real[None], real]), np.concatenate([prev_gen[None], gen])])
    keys, turn = probe.predict(clips)
    joint = step_scores(keys, turn, np.repeat(actions, 2, axis=0), probe.config.dead_zone)[-1]
    return float(joint[0, 0]), float(joint[1, 0])


def run_stability(
    model: CausalWorldModel,
    cfg: StabilityConfig,
    game: DoomConfig,
    maps: MapSplit | None = None,
    sink: FrameSink | None = None,
    progress: bool = True,
    probe: Probe | None = None,
    features: Any = None,
) -> StabilityResult:
    """Roll ``model`` out against the real game ``cfg.rollouts`` times; ``sink(real, generated, rollout)`` gets each
    step's frames (uint8 [4, H, W, 3] each) as they come, for a video, without keeping them in memory.
    ``features``: a :class:`~distillation.evaluation.features.FrameFeatures` for the windows' Fréchet distances
    (only the two windows' frames of the current rollout are kept, ~30 MB at 100 steps; they are embedded once the
    rollout ends, so the steps between the windows cost nothing)."""
    import time
    from collections import deque

    from tqdm.auto import tqdm

    if not getattr(model, "causal", False):
        raise ValueError(f"stability rollouts need a causal (streaming) model; {model.name} is not")
    if tuple(game.output_size) != tuple(model.frame_size):
        raise ValueError(f"the game's frames ({game.output_size}) differ from the model's ({model.frame_size})")
    t0 = time.perf_counter()
    split_maps = (maps or MapSplit(game.wad)).maps(cfg.split)
    names = METRICS + (PROBE_METRICS if probe is not None else ())
    per_step = {m: np.full((cfg.rollouts, cfg.steps), np.nan) for m in names}
    result = StabilityResult(cfg, per_step, [], [], [])
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("gen_start", "real_start", "gen_end", "real_end")}
    for r in range(cfg.rollouts):
        map_name = split_maps[r % len(split_maps)]
        bar = tqdm(total=cfg.steps, desc=f"stability {r + 1}/{cfg.rollouts}", unit="step", disable=not progress)
        with fresh_game(game) as env:
            for attempt in range(20):  # an episode that ends within the prefix: draw another seed
                seed = int(np.random.default_rng([cfg.seed, r, attempt, 7]).integers(0, 2**31 - 1))
                policy = explorer(seed, game)
                try:
                    obs, info, _ = start_episode(env, map_name, seed, policy, cfg.prefix_steps)
                    break
                except EpisodeEnded:
                    continue
            else:
                raise RuntimeError(f"20 episodes on {map_name} ended within {cfg.prefix_steps} steps")
            caption = str(info.get("caption", ""))
            last_gen, last_real = model.start(obs[None], [caption], [seed])[0, -1], obs
            last_pose = np.asarray(info["pose"], np.float64)
            scripted = _scripted(cfg, seed) if cfg.policy != "explorer" else None
            steps_run = 0
            first_frames: list[np.ndarray] = []  # [2, 4, H, W, 3] (generated, real) per step of each window
            last_frames: deque[np.ndarray] = deque(maxlen=cfg.end_window)
            for t in range(cfg.steps):
                action = np.asarray(policy(obs, info) if scripted is None else scripted(t), np.float32)
                obs, _, term, trunc, info = env.step(action)
                if term or trunc:
                    break
                real = info["frames"]
                gen = model.step(action[None])[0]
                p, s = frame_metrics(real[None], gen[None])
                (gb, gc), (rb, rc) = frame_stats(gen), frame_stats(real)
                for name, v in zip(METRICS, (gb, rb, gc, rc, float(p.mean()), float(s.mean()))):
                    per_step[name][r, t] = v
                if probe is not None:
                    pose = np.asarray(info["pose"], np.float64)
                    walked = float(np.linalg.norm(pose[:2] - last_pose[:2]))
                    real_ok, gen_ok = probe_step(probe, last_real, real, last_gen, gen, action, walked)
                    last_pose = pose
                    per_step["probe_real_joint"][r, t], per_step["probe_gen_joint"][r, t] = real_ok, gen_ok
                last_real, last_gen = real[-1], gen[-1]
                if features is not None:
                    both = np.stack([gen, real])
                    last_frames.append(both)
                    if t < cfg.end_window:
                        first_frames.append(both)
                if sink is not None:
                    sink(real, gen, r)
                steps_run = t + 1
                bar.update(1)
                if t % 25 == 0:
                    bar.set_postfix(psnr=f"{np.nanmean(per_step['psnr'][r, max(0, t - 24) : t + 1]):.2f}")
        bar.close()
        for window, frames in (("start", first_frames), ("end", list(last_frames))):
            if frames:
                feats = features.embed(np.stack(frames, axis=1))  # [2, steps, 4, dim]
                pooled[f"gen_{window}"].append(feats[0].reshape(-1, feats.shape[-1]))
                pooled[f"real_{window}"].append(feats[1].reshape(-1, feats.shape[-1]))
        result.steps_run.append(steps_run)
        result.maps.append(map_name)
        result.seeds.append(seed)
        result.captions.append(caption)
    if features is not None:
        result.window_features = {k: np.concatenate(v) for k, v in pooled.items() if v}
    result.seconds = time.perf_counter() - t0
    return result
