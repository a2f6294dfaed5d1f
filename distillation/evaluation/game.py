"""The ground truth: clips of the real game that start from a real frame and can be replayed exactly.

A clip is described by an :class:`EpisodeStart` (map, episode seed, the ``prefix`` actions the exploration
policy played after the random start to reach the start frame) and its ``n`` actions. Every clip is played in a
**fresh game process**: with ``god_mode`` on (the data engine's setting), an episode played after other episodes
in the same process drifts from the same episode in a fresh process (monsters differ after ~100 steps), so
"same map, seed and actions" gives the same frames only for the same process history. A fresh process per clip
makes every clip a pure function of its description, which the real-vs-real check of the harness relies on. It
costs about half a second per clip, small next to any model's sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillation.data.clips import DEFAULT_ENV
from distillation.data.policy import PLAYER_RADIUS, ExplorationPolicy, free_distance
from distillation.data.splits import MapSplit
from lingbot_env.doom.game import SUPPORTED_RESOLUTIONS, DoomConfig
from lingbot_env.doom.wad import list_maps, map_walls, resolve_wad

StepPolicy = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def render_resolution(frame_size: tuple[int, int]) -> tuple[int, int]:
    """The smallest ViZDoom render size that covers ``frame_size`` (W, H); 160x120 for the Doom model's 128x96.

    Rendering small and resizing down is what the training data does, so a model sees the same pixels here.
    """
    w, h = frame_size
    for rw, rh in SUPPORTED_RESOLUTIONS:
        if rw >= w and rh >= h:
            return rw, rh
    return SUPPORTED_RESOLUTIONS[-1]


def start_map(wad: str, preferred: str = "MAP01") -> str:
    """``preferred`` if ``wad`` has that map, else the first training map of the WAD's own split
    (:class:`~distillation.data.splits.MapSplit`; MAP01 is not in Doom I-style WADs such as freedoom1, whose maps
    are E1M1 ...), or the WAD's first map if it has no default split. Only the map the game process starts on:
    every clip resets onto its own map."""
    path = resolve_wad(wad)
    if str(preferred).strip().upper() in list_maps(path):
        return str(preferred).strip().upper()
    try:
        return MapSplit(wad).maps("train")[0]
    except ValueError:
        return list_maps(path)[0]


def game_config(frame_size: tuple[int, int], wad: str = "freedoom2", base: DoomConfig | None = None) -> DoomConfig:
    """The real game as the data engine plays it (random start, god mode, labels and depth for captions), with
    frames resized to ``frame_size`` (W, H), the size of the model under test, starting on a map of ``wad``."""
    base = DEFAULT_ENV if base is None else base
    return base.replace(
        wad=wad, map=start_map(wad, base.map), resolution=render_resolution(frame_size), frame_size=tuple(frame_size)
    )


@dataclass(frozen=True)
class EpisodeStart:
    """Where a clip starts: ``map``, episode ``seed`` and the ``prefix`` float32 [k, 6] played before frame 0."""

    map: str
    seed: int
    prefix: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "seed": self.seed, "prefix_steps": len(self.prefix)}


@dataclass
class RealClip:
    """A clip of the real game.

    frames uint8 [1 + 4n, H, W, 3] (frame 0 = start frame, action ``i`` -> frames ``4i+1 .. 4i+4``);
    actions float32 [n, 6]; poses float32 [1 + 4n, 5]; caption: the start frame's game-state caption;
    source: ``"recorded"`` (the exploration policy played it) or ``"scripted:<pattern>"``.
    """

    start: EpisodeStart
    frames: np.ndarray
    actions: np.ndarray
    poses: np.ndarray
    caption: str
    source: str


class EpisodeEnded(RuntimeError):
    """The game episode ended (level exit or death) before the clip was complete."""


@contextmanager
def fresh_game(config: DoomConfig) -> Iterator[Any]:
    """A new game process for ``config``, closed on exit (see the module docstring for why fresh)."""
    from lingbot_env.doom.env import ViZDoomWASDEnv

    env = ViZDoomWASDEnv(config)
    try:
        yield env
    finally:
        env.close()


def explorer(seed: int, config: DoomConfig) -> ExplorationPolicy:
    """The data engine's exploration policy, seeded by the episode seed (prefixes and recorded clips)."""
    return ExplorationPolicy(seed, action_spec=config.action_spec)


def start_episode(env: Any, map_name: str, seed: int, prefix: np.ndarray | StepPolicy, steps: int = 0):
    """Reset ``env`` to (``map_name``, ``seed``) and play the prefix: an array [k, 6] or a policy for ``steps``.

    Returns ``(obs, info, prefix_actions float32 [k, 6])``; raises :class:`EpisodeEnded` if the episode ends.
    """
    obs, info = env.reset(seed=int(seed), options={"map": map_name})
    played: list[np.ndarray] = []
    count = len(prefix) if isinstance(prefix, np.ndarray) else steps
    for i in range(count):
        action = prefix[i] if isinstance(prefix, np.ndarray) else np.asarray(prefix(obs, info), np.float32)
        obs, _, term, trunc, info = env.step(action)
        played.append(np.asarray(action, np.float32))
        if term or trunc:
            raise EpisodeEnded(f"episode {map_name}/{seed} ended during the {count}-step prefix")
    return obs, info, np.asarray(played, np.float32).reshape(-1, 6)


def play(env: Any, obs: np.ndarray, info: dict[str, Any], actions: np.ndarray | StepPolicy, steps: int):
    """Play ``steps`` steps from (``obs``, ``info``) with an action array [steps, 6] or a policy.

    Returns ``frames uint8 [4 * steps, H, W, 3]``, ``poses float32 [4 * steps, 5]`` and the actions played
    float32 [steps, 6] (clipped to the action box); raises :class:`EpisodeEnded` if the episode ends.
    """
    frames, poses, played = [], [], []
    low, high = env.action_space.low, env.action_space.high
    for i in range(steps):
        action = actions[i] if isinstance(actions, np.ndarray) else np.asarray(actions(obs, info), np.float32)
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            raise EpisodeEnded(f"episode ended after {i} of {steps} steps")
        frames.append(info["frames"])
        poses.append(info["poses"])
        played.append(np.clip(np.asarray(action, np.float32), low, high))
    return np.concatenate(frames), np.concatenate(poses), np.asarray(played, np.float32).reshape(steps, 6)


def room(info: dict[str, Any], direction_deg: float) -> float:
    """Free distance (map units) from the player to the nearest wall ``direction_deg`` from the view direction.

    Three rays (straight and +-10 degrees) stand in for the player's width, as in the exploration policy.
    Doors and steps count as open (the WAD's one-sided lines only), so this is an upper bound.
    """
    walls = map_walls(resolve_wad(str(info["wad"])), str(info["map"]))
    if not len(walls):
        return float("inf")
    pose = np.asarray(info["pose"], np.float64)
    angles = pose[3] + direction_deg + np.array([-10.0, 0.0, 10.0])
    return float(free_distance(walls, pose[:2], angles).min()) - PLAYER_RADIUS


def step_displacement(poses: np.ndarray) -> np.ndarray:
    """Clip poses float32 [1 + 4n, 5] -> distance walked during each step [n] (map units, x/y plane)."""
    xy = np.asarray(poses, np.float64)[::4, :2]
    return np.linalg.norm(np.diff(xy, axis=0), axis=1)


def record_clip(
    config: DoomConfig,
    map_name: str,
    seed: int,
    prefix_steps: int,
    actions: np.ndarray | None,
    steps: int,
    source: str,
    need_room: tuple[float, float] | None = None,
) -> RealClip | None:
    """Play one clip in a fresh game: the explorer plays ``prefix_steps`` steps, then ``actions`` [steps, 6]
    (or, with ``actions=None``, the explorer goes on: a recorded clip). ``None`` if the episode ended early, or
    if ``need_room`` = (direction_deg, distance) is given and the start has less free room that way."""
    with fresh_game(config) as env:
        policy = explorer(seed, config)
        try:
            obs, info, prefix = start_episode(env, map_name, seed, policy, prefix_steps)
            if need_room is not None and room(info, need_room[0]) < need_room[1]:
                return None
            caption, pose0 = str(info.get("caption", "")), info["pose"]
            frames, poses, played = play(env, obs, info, policy if actions is None else actions, steps)
        except EpisodeEnded:
            return None
    return RealClip(
        start=EpisodeStart(map_name, int(seed), prefix),
        frames=np.concatenate([obs[None], frames]),
        actions=played,
        poses=np.concatenate([pose0[None], poses]),
        caption=caption,
        source=source,
    )


def replay_clip(config: DoomConfig, start: EpisodeStart, actions: np.ndarray) -> np.ndarray:
    """Replay a clip in a fresh game: ``uint8 [1 + 4n, H, W, 3]`` for ``actions`` [n, 6] from ``start``."""
    with fresh_game(config) as env:
        obs, info, _ = start_episode(env, start.map, start.seed, np.asarray(start.prefix, np.float32))
        frames, _, _ = play(env, obs, info, np.asarray(actions, np.float32), len(actions))
    return np.concatenate([obs[None], frames])
