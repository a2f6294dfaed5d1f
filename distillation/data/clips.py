"""Playing the real game with a policy and cutting the recording into fixed-length clips.

Clip layout (the same everywhere in the data engine): a clip of ``n`` steps has ``F = 4n + 1`` frames
(with ``frames_per_step = 4``). Frame 0 is the start frame (what the player saw before the clip's
first action); action ``i`` (0-based) is held for the next 4 frames, ``4i+1 .. 4i+4``, which form
latent frame ``i + 1`` of the Wan VAE (latent frame 0 is frame 0 alone). Per-latent-frame quantities
(captions, visible objects) have ``n + 1`` entries: entry 0 describes frame 0, entry ``j`` frame ``4j``.
Consecutive clips of an episode share their boundary frame (the last frame of one is frame 0 of the next).
"""

from __future__ import annotations

import os
import queue as queue_mod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillation.data.policy import ExplorerConfig, Policy, load_policy
from distillation.data.splits import MapSplit
from lingbot_env.doom.game import DoomConfig

SPLIT_CODES = {"train": 0, "val": 1}

# Collection defaults differ from the interactive env's: start anywhere on the map, never die, never time
# out (clip length is controlled here), depth on so captions can say "corridor".
DEFAULT_ENV = DoomConfig(random_start=True, god_mode=True, max_steps=0, depth=True, labels=True)


@dataclass(frozen=True)
class GenerationConfig:
    """What gets played and how it is cut into clips (shared by the collector and on-the-fly datasets).

    Args:
        env: real-game options (its ``map`` is overridden per episode from ``maps``).
        maps: the train/val map split.
        steps_per_clip: ``n``; each clip has ``frames_per_step * n + 1`` frames.
        clips_per_episode: consecutive clips taken from one episode before a new episode (new seed, new
            random start) begins; small values give more variety per clip.
        episodes_per_map: consecutive episodes on one map before another map is drawn (loading a map
            costs about as much as playing 50-250 frames, so switching every episode is wasteful).
        skip_steps: steps played (not recorded) at the start of each episode, to leave the spawn spot.
        policy: ``"explorer"``, ``"random"`` or ``"package.module:factory"`` (see ``load_policy``).
        explorer: settings of the exploration policy.
    """

    env: DoomConfig = field(default_factory=lambda: DEFAULT_ENV)
    maps: MapSplit = field(default_factory=MapSplit)
    steps_per_clip: int = 16
    clips_per_episode: int = 4
    episodes_per_map: int = 4
    skip_steps: int = 0
    policy: str = "explorer"
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)

    def __post_init__(self) -> None:
        if self.steps_per_clip < 1:
            raise ValueError(f"steps_per_clip must be >= 1, got {self.steps_per_clip}")
        if self.clips_per_episode < 1:
            raise ValueError(f"clips_per_episode must be >= 1, got {self.clips_per_episode}")
        if self.episodes_per_map < 1:
            raise ValueError(f"episodes_per_map must be >= 1, got {self.episodes_per_map}")
        if self.skip_steps < 0:
            raise ValueError(f"skip_steps must be >= 0, got {self.skip_steps}")
        if self.env.wad.lower().removesuffix(".wad") != self.maps.wad.lower().removesuffix(".wad"):
            raise ValueError(f"env.wad ({self.env.wad}) and maps.wad ({self.maps.wad}) differ")

    @property
    def frames_per_step(self) -> int:
        return self.env.action_spec.frames_per_step

    @property
    def frames_per_clip(self) -> int:
        return self.frames_per_step * self.steps_per_clip + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env.to_dict(),
            "maps": self.maps.to_dict(),
            "steps_per_clip": self.steps_per_clip,
            "clips_per_episode": self.clips_per_episode,
            "episodes_per_map": self.episodes_per_map,
            "skip_steps": self.skip_steps,
            "policy": self.policy,
            "explorer": self.explorer.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationConfig:
        return cls(
            env=DoomConfig.from_dict(d["env"]),
            maps=MapSplit.from_dict(d["maps"]),
            steps_per_clip=d["steps_per_clip"],
            clips_per_episode=d["clips_per_episode"],
            episodes_per_map=d["episodes_per_map"],
            skip_steps=d["skip_steps"],
            policy=d["policy"],
            explorer=ExplorerConfig.from_dict(d["explorer"]),
        )


@dataclass
class Clip:
    """One recorded clip (see the module docstring for the frame/action alignment).

    frames uint8 [F, H, W, 3]; actions float32 [n, 6]; poses float32 [F, 5] (x, y, z, yaw, pitch);
    rewards float32 [n]; captions: n + 1 strings; objects: n + 1 lists of visible-object dicts;
    map, wad; seed: the episode's seed; episode: episode counter of the producing stream;
    index: clip number within its episode.
    """

    frames: np.ndarray
    actions: np.ndarray
    poses: np.ndarray
    rewards: np.ndarray
    captions: list[str]
    objects: list[list[dict[str, Any]]]
    map: str
    wad: str
    seed: int
    episode: int
    index: int


class ClipGenerator:
    """Runs episodes of the real game with a policy and yields clips; owns one game process."""

    def __init__(self, config: GenerationConfig) -> None:
        from lingbot_env.doom.env import ViZDoomWASDEnv

        self.config = config
        self.env = ViZDoomWASDEnv(config.env)
        self._policy: Policy | None = None

    def _policy_for(self, seed: int) -> Policy:
        if self._policy is None:
            self._policy = load_policy(self.config.policy, seed, self.config.explorer, self.config.env.action_spec)
        reset = getattr(self._policy, "reset", None)
        if callable(reset):
            reset(seed)
        return self._policy

    def episode(self, map_name: str, seed: int, episode: int = 0, max_clips: int | None = None) -> Iterator[Clip]:
        """Play one episode on ``map_name`` with ``seed``; yield up to ``clips_per_episode`` full clips.

        Deterministic: the same (config, map, seed) always yields the same clips. An episode that ends
        (death, level exit) before a clip is complete drops that partial clip.
        """
        cfg = self.config
        n, fps = cfg.steps_per_clip, cfg.frames_per_step
        policy = self._policy_for(seed)
        obs, info = self.env.reset(seed=seed, options={"map": map_name})
        for _ in range(cfg.skip_steps):
            obs, _, term, trunc, info = self.env.step(policy(obs, info))
            if term or trunc:
                return
        limit = cfg.clips_per_episode if max_clips is None else min(max_clips, cfg.clips_per_episode)
        h, w = obs.shape[:2]
        for k in range(limit):
            frames = np.empty((fps * n + 1, h, w, 3), np.uint8)
            poses = np.empty((fps * n + 1, 5), np.float32)
            actions = np.empty((n, 6), np.float32)
            rewards = np.empty((n,), np.float32)
            frames[0], poses[0] = obs, info["pose"]
            captions, objects = [info.get("caption", "")], [info.get("visible_objects", [])]
            for i in range(n):
                action = np.asarray(policy(obs, info), dtype=np.float32)
                obs, reward, term, trunc, info = self.env.step(action)
                if term or trunc:
                    return
                actions[i] = np.clip(action, self.env.action_space.low, self.env.action_space.high)
                rewards[i] = reward
                frames[fps * i + 1 : fps * (i + 1) + 1] = info["frames"]
                poses[fps * i + 1 : fps * (i + 1) + 1] = info["poses"]
                captions.append(info.get("caption", ""))
                objects.append(info.get("visible_objects", []))
            yield Clip(frames, actions, poses, rewards, captions, objects, map_name, info["wad"], seed, episode, k)

    def clips(self, rng: np.random.Generator, split: str, count: int | None = None) -> Iterator[Clip]:
        """Endless (or ``count``) clips of ``split``'s maps; episode maps and seeds are drawn from ``rng``."""
        maps = self.config.maps.maps(split)
        made, episode, empty_streak, map_left, map_name = 0, 0, 0, 0, maps[0]
        while count is None or made < count:
            if map_left == 0:
                map_name, map_left = str(rng.choice(maps)), self.config.episodes_per_map
            map_left -= 1
            seed = int(rng.integers(0, 2**31 - 1))
            got = 0
            for clip in self.episode(map_name, seed, episode, None if count is None else count - made):
                yield clip
                made += 1
                got += 1
            episode += 1
            empty_streak = 0 if got else empty_streak + 1
            if empty_streak >= 50:
                raise RuntimeError(
                    "50 episodes in a row ended before a single clip was complete; "
                    "lower steps_per_clip/skip_steps or enable god_mode"
                )

    def close(self) -> None:
        self.env.close()


STREAM_KINDS = {"shard": 0, "online": 1}


def stream_rng(seed: int, split: str, stream: int, kind: str = "shard") -> np.random.Generator:
    """Independent, reproducible RNG for one clip stream: shard ``stream`` or on-the-fly worker ``stream``."""
    return np.random.default_rng([seed, SPLIT_CODES[split], STREAM_KINDS[kind], stream])


def stream_worker(cfg: GenerationConfig, split: str, seed: int, stream: int, out: Any, stop: Any) -> None:
    """Body of an on-the-fly worker process: put ``(stream, k, clip)`` on ``out`` until ``stop`` is set.

    Lives here rather than next to the torch dataset so that spawned workers do not import torch.
    A failure is reported as ``(stream, -1, message)`` so that the consumer raises instead of hanging.
    """
    # A consumer killed outright (SIGKILL, or SIGTERM without cleanup) never sets ``stop``: the worker notices
    # that it has been re-parented and ends, rather than playing on with nobody to read its clips.
    parent = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent

    def done() -> bool:
        return stop.is_set() or orphaned()

    gen = ClipGenerator(cfg)
    try:
        for k, clip in enumerate(gen.clips(stream_rng(seed, split, stream, "online"), split)):
            while not done():
                try:
                    out.put((stream, k, clip), timeout=0.5)
                    break
                except queue_mod.Full:
                    continue
            if done():
                break
    except Exception as e:
        out.put((stream, -1, f"{type(e).__name__}: {e}"))
    finally:
        # The consumer drains the queue until this process has exited, so the queue's feeder thread
        # can always flush (cancelling it instead could leave a half-written clip in the pipe). Without a
        # consumer nothing drains it, and waiting for the flush would keep this process alive for ever.
        gen.close()
        if orphaned():
            out.cancel_join_thread()
