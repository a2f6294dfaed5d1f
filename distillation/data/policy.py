"""Policies that play the game while data is recorded: a human-like exploration policy and the plug-in point.

A policy is any callable ``policy(obs, info) -> action`` with ``obs`` uint8 [H, W, 3], ``info`` the env's
info dict and ``action`` float32 [6] = ``[W, A, S, D, yaw, pitch]`` (see :mod:`lingbot_env.actions`).
If it also has ``reset(seed)``, that is called at the start of every episode (determinism).
Trained agents plug in through :func:`load_policy` (``"package.module:factory"``).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lingbot_env.actions import DEFAULT_SPEC, ActionSpec, make_action


@runtime_checkable
class Policy(Protocol):
    """``(obs uint8 [H, W, 3], info dict) -> action float32 [6]``."""

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...


PolicyFactory = Callable[[int], Policy]
"""``factory(seed) -> policy``; called once per episode-generating process."""

MODES: tuple[str, ...] = ("travel", "turn", "strafe", "look", "pause", "backoff")
PLAYER_RADIUS = 16.0


@dataclass(frozen=True)
class ExplorerConfig:
    """Knobs of :class:`ExplorationPolicy`; durations are in env steps (latent frames), as (min, max).

    Args:
        weights: relative probability of starting each behaviour: ``travel`` (pick an open, preferably
            unvisited direction, turn towards it smoothly and walk there), ``turn`` (a free look-around
            turn, often while walking), ``strafe`` (A or D, sometimes with W), ``look`` (pitch up or
            down), ``pause`` (no keys), ``backoff`` (S with a slow turn).
        travel_steps, turn_steps, ...: duration ranges of the behaviours.
        turn_speed: range of |yaw| (fraction of the max turn rate) for free turns.
        walk_while_turning: probability that a free turn also holds W.
        strafe_with_forward: probability that a strafe also holds W.
        look_speed: range of |pitch| for look behaviours.
        wobble: max |yaw| of the smooth drift while travelling (people never walk perfectly straight).
        level_gain: fraction of the current pitch removed per step while moving (people re-level).
        stuck_steps, stuck_dist: "stuck" when the last ``stuck_steps`` steps moved less than
            ``stuck_dist`` map units in total while a movement key was held -> back off, then travel.
        rays: directions probed (over 360 degrees) when choosing where to travel; the probe casts
            rays against the map's walls read from the WAD (from ``info["wad"]``, ``info["map"]`` and
            ``info["pose"]``); without them directions are random and only stuck-detection steers.
        clearance: replan a travel when the wall ahead is closer than this (map units; a walking player
            covers about 64 per step and slides on for about 40 after letting go of W).
        novelty: weight of "not visited yet" against "open" when choosing a direction.
        turn_cost: preference for directions near the current heading (people rarely turn around).
        sidestep: probability that a travel's on-the-spot turns also strafe towards the turn.
        turn_walk_margin: a travel keeps walking while turning if the wall ahead is farther than
            60 + this x (steps the turn still needs); smaller = more walking into walls and sliding.
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {"travel": 6.0, "turn": 1.5, "strafe": 1.0, "look": 1.0, "pause": 0.5, "backoff": 0.2}
    )
    travel_steps: tuple[int, int] = (8, 40)
    turn_steps: tuple[int, int] = (2, 10)
    strafe_steps: tuple[int, int] = (2, 8)
    look_steps: tuple[int, int] = (2, 6)
    pause_steps: tuple[int, int] = (1, 6)
    backoff_steps: tuple[int, int] = (2, 4)
    turn_speed: tuple[float, float] = (0.2, 1.0)
    walk_while_turning: float = 0.6
    strafe_with_forward: float = 0.5
    look_speed: tuple[float, float] = (0.3, 1.0)
    wobble: float = 0.12
    level_gain: float = 0.3
    stuck_steps: int = 3
    stuck_dist: float = 12.0
    rays: int = 24
    clearance: float = 192.0
    novelty: float = 0.8
    turn_cost: float = 0.8
    sidestep: float = 0.5
    turn_walk_margin: float = 16.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(MODES)
        if unknown:
            raise ValueError(f"unknown explorer behaviours {sorted(unknown)}; known: {list(MODES)}")
        if not any(v > 0 for v in self.weights.values()):
            raise ValueError("explorer weights must have at least one positive entry")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExplorerConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=64)
def _walls(wad: str, map_name: str) -> np.ndarray | None:
    from lingbot_env.doom.wad import map_walls, resolve_wad

    try:
        return map_walls(resolve_wad(wad), map_name)
    except (ValueError, FileNotFoundError, ImportError, StopIteration):
        return None


def free_distance(walls: np.ndarray, origin: np.ndarray, angles_deg: np.ndarray, cap: float = 2048.0) -> np.ndarray:
    """Distance from ``origin`` [2] to the nearest wall along each direction (Doom degrees) -> [K]."""
    a = np.radians(angles_deg)
    d = np.stack([np.cos(a), np.sin(a)], axis=1)[:, None, :]  # [K, 1, 2]
    p, e = walls[None, :, :2], walls[None, :, 2:] - walls[None, :, :2]  # [1, L, 2]
    w = p - origin[None, None, :]
    denom = d[..., 0] * e[..., 1] - d[..., 1] * e[..., 0]  # cross(d, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[..., 0] * e[..., 1] - w[..., 1] * e[..., 0]) / denom  # along the ray
        u = (w[..., 0] * d[..., 1] - w[..., 1] * d[..., 0]) / denom  # along the wall
    hit = (np.abs(denom) > 1e-9) & (t > 0) & (u >= 0) & (u <= 1)
    return np.where(hit, t, cap).min(axis=1).clip(max=cap)


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


class ExplorationPolicy:
    """Varied, human-like play from a small random state machine (deterministic for a seed).

    Most of the time the player *travels*: it picks a direction that is open and leads somewhere not
    yet visited (rays cast against the WAD's walls), turns there smoothly (rate-limited, eased, often
    while walking) and walks on with a slight wobble until a wall comes near, then picks again. Free
    turns, strafes (sometimes circling), looks up/down, pauses and back-offs are mixed in; getting stuck
    makes the player back off and travel elsewhere. Doors and switches are opened by the env's
    ``auto_use`` when walking is blocked, so no extra key is needed.
    """

    def __init__(
        self, seed: int = 0, config: ExplorerConfig | None = None, action_spec: ActionSpec = DEFAULT_SPEC
    ) -> None:
        self.config = config or ExplorerConfig()
        self.spec = action_spec
        names = [m for m in MODES if self.config.weights.get(m, 0) > 0]
        w = np.array([self.config.weights[m] for m in names], dtype=np.float64)
        self._modes, self._probs = names, w / w.sum()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.mode = "pause"
        self._left = 0
        self._t = 0
        self._len = 1
        self._params: dict[str, float] = {}
        self._queue: list[str] = []
        self._wobble = 0.0
        self._visited: dict[tuple[int, int], int] = {}
        self._positions: deque[np.ndarray] = deque(maxlen=self.config.stuck_steps + 1)
        self._moving: deque[bool] = deque(maxlen=self.config.stuck_steps)

    @property
    def _yaw_per_step(self) -> float:
        return self.spec.max_yaw_deg_per_frame * self.spec.frames_per_step

    @property
    def _pitch_per_step(self) -> float:
        return self.spec.max_pitch_deg_per_frame * self.spec.frames_per_step

    # -------------------------------------------------------------- where to go
    def _pick_heading(self, walls: np.ndarray | None, pose: np.ndarray, avoid_ahead: bool) -> float:
        c, r = self.config, self.rng
        angles = (np.arange(c.rays) * 360.0 / c.rays + r.uniform(0, 360.0 / c.rays)) % 360.0
        if walls is None or not len(walls):
            return float(r.choice(angles))
        free = free_distance(walls, pose[:2], angles) - PLAYER_RADIUS
        # Novelty: share of not-yet-visited 128-unit cells at 64-unit steps along each ray (up to 512).
        steps = np.arange(64.0, 576.0, 64.0)
        rad = np.radians(angles)
        pts = pose[None, None, :2] + steps[None, :, None] * np.stack([np.cos(rad), np.sin(rad)], 1)[:, None, :]
        cells = np.floor(pts / 128.0).astype(np.int64)
        seen = np.array([[(int(x), int(y)) in self._visited for x, y in row] for row in cells], dtype=np.float64)
        reach = steps[None, :] <= np.maximum(free, 64.0)[:, None]
        novelty = ((1.0 - seen) * reach).sum(1) / np.maximum(reach.sum(1), 1)
        turn = np.abs([_wrap(a - float(pose[3])) for a in angles]) / 180.0
        score = np.minimum(free, 768.0) / 768.0 + c.novelty * novelty - c.turn_cost * turn
        score += r.gumbel(size=len(angles)) * 0.15  # variety: not always the single best direction
        score[free < c.clearance + 64.0] -= 10.0  # dead ends: only if nothing else is open
        if avoid_ahead:
            score[turn < 0.25] -= 1.0
        return float(angles[int(np.argmax(score))])

    # -------------------------------------------------------------- behaviour selection
    def _steps(self, rng_range: tuple[int, int]) -> int:
        lo, hi = rng_range
        return int(self.rng.integers(lo, hi + 1))

    def _start(self, mode: str, walls: np.ndarray | None, pose: np.ndarray, avoid_ahead: bool = False) -> None:
        c, r = self.config, self.rng
        p: dict[str, float] = {}
        if mode == "travel":
            n = self._steps(c.travel_steps)
            p = {
                "heading": self._pick_heading(walls, pose, avoid_ahead),
                "speed": float(r.uniform(0.6, 1.0)),
                "sidestep": float(r.random() < c.sidestep),
            }
        elif mode == "turn":
            n = self._steps(c.turn_steps)
            p = {
                "dir": float(r.choice([-1.0, 1.0])),
                "speed": float(r.uniform(*c.turn_speed)),
                "walk": float(r.random() < c.walk_while_turning),
            }
        elif mode == "strafe":
            n = self._steps(c.strafe_steps)
            p = {"dir": float(r.choice([-1.0, 1.0])), "walk": float(r.random() < c.strafe_with_forward)}
            p["yaw"] = float(r.uniform(-0.3, 0.3)) * (r.random() < 0.5)  # circle-strafing now and then
        elif mode == "look":
            n = self._steps(c.look_steps)
            p = {"dir": float(r.choice([-1.0, 1.0])), "speed": float(r.uniform(*c.look_speed))}
        elif mode == "pause":
            n = self._steps(c.pause_steps)
        elif mode == "backoff":
            n = self._steps(c.backoff_steps)
            p = {"dir": float(r.choice([-1.0, 1.0])), "speed": float(r.uniform(0.0, 0.5))}
        else:
            raise ValueError(f"unknown behaviour {mode!r}")
        self.mode, self._left, self._len, self._t, self._params = mode, n, n, 0, p

    def _stuck(self) -> bool:
        if len(self._positions) <= self.config.stuck_steps or not all(self._moving):
            return False
        pts = list(self._positions)
        moved = sum(float(np.linalg.norm(b - a)) for a, b in zip(pts[:-1], pts[1:]))
        return moved < self.config.stuck_dist

    def _choose(self, walls: np.ndarray | None, pose: np.ndarray, ahead: float) -> None:
        if self._stuck() and self.mode != "backoff":
            self._positions.clear()
            self._start("backoff", walls, pose)
            self._queue = ["travel"]
        elif (
            self.mode == "travel"
            and ahead < self.config.clearance
            and abs(_wrap(self._params["heading"] - float(pose[3]))) < 20.0
        ):
            # Facing the chosen way and a wall comes near: choose a new way (not straight on), as a
            # person would before bumping. (While still turning towards a heading, keep it.)
            self._start("travel", walls, pose, avoid_ahead=True)
        elif self._left <= 0:
            mode = self._queue.pop(0) if self._queue else str(self.rng.choice(self._modes, p=self._probs))
            self._start(mode, walls, pose, avoid_ahead=ahead < 2 * self.config.clearance)

    # -------------------------------------------------------------- acting
    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        c, r = self.config, self.rng
        pose = np.asarray(info.get("pose", np.zeros(5)), dtype=np.float64)
        self._positions.append(pose[:2].copy())
        cell = (int(pose[0] // 128), int(pose[1] // 128))
        self._visited[cell] = self._visited.get(cell, 0) + 1
        walls = _walls(str(info["wad"]), str(info["map"])) if "wad" in info and "map" in info else None
        # Three rays (straight and +-10 degrees) stand in for the player's 32-unit width.
        ahead = (
            float(free_distance(walls, pose[:2], pose[3] + np.array([-10.0, 0.0, 10.0])).min()) - PLAYER_RADIUS
            if walls is not None and len(walls)
            else float("inf")
        )
        self._choose(walls, pose, ahead)

        p, t, n = self._params, self._t, self._len
        # Ease in/out (sin) so free turns accelerate and settle like a hand on a mouse.
        ease = math.sin(math.pi * (t + 0.5) / n) if n > 1 else 1.0
        level = float(np.clip(-c.level_gain * float(pose[4]) / self._pitch_per_step, -1.0, 1.0))
        if self.mode == "travel":
            self._wobble = 0.8 * self._wobble + 0.2 * float(r.normal(0.0, c.wobble))
            # yaw > 0 turns right = decreasing Doom angle, hence the minus sign.
            err = -_wrap(p["heading"] - float(pose[3]))
            yaw = float(np.clip(err / self._yaw_per_step, -p["speed"], p["speed"]))
            if abs(err) < 2 * self._yaw_per_step:
                yaw += float(np.clip(self._wobble, -c.wobble, c.wobble))
            # Walk while turning only if the turn can finish before the wall (turning is slow: 8 degrees
            # a step at full rate); otherwise stop and turn on the spot, looking around the room.
            turn_steps = abs(err) / (p["speed"] * self._yaw_per_step)
            walk = abs(err) < 15.0 or ahead > 60.0 + c.turn_walk_margin * turn_steps
            # Turning on the spot, people often sidestep the same way (A with a left turn, D with a right).
            side = not walk and bool(p["sidestep"])
            action = make_action(w=walk, a=side and yaw < 0, d=side and yaw > 0, yaw=yaw, pitch=level)
        elif self.mode == "turn":
            action = make_action(w=bool(p["walk"]), yaw=p["dir"] * p["speed"] * max(ease, 0.35), pitch=level)
        elif self.mode == "strafe":
            action = make_action(w=bool(p["walk"]), a=p["dir"] < 0, d=p["dir"] > 0, yaw=p["yaw"], pitch=level)
        elif self.mode == "look":
            action = make_action(pitch=p["dir"] * p["speed"] * ease)
        elif self.mode == "backoff":
            action = make_action(s=True, yaw=p["dir"] * p["speed"])
        else:  # pause: hands off, maybe a tiny glance
            action = make_action(yaw=float(r.normal(0.0, 0.05)))
        self._moving.append(bool(action[:4].max() > 0.5))
        self._t += 1
        self._left -= 1
        return action


class RandomPolicy:
    """Uniformly random actions (a baseline; not human-like)."""

    def __init__(self, seed: int = 0) -> None:
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        a = self.rng.random(6).astype(np.float32)
        a[4:] = a[4:] * 2 - 1
        return a


BUILTIN_POLICIES = ("explorer", "random")


def load_policy(
    spec: str, seed: int, explorer: ExplorerConfig | None = None, action_spec: ActionSpec = DEFAULT_SPEC
) -> Policy:
    """Make a policy from a name: ``"explorer"``, ``"random"`` or ``"package.module:factory"``.

    A ``module:factory`` is called as ``factory(seed)`` and must return a :class:`Policy` (for example a
    wrapper around a trained agent's ``predict``). It is imported in each worker process.
    """
    if spec == "explorer":
        return ExplorationPolicy(seed, explorer, action_spec)
    if spec == "random":
        return RandomPolicy(seed)
    if ":" not in spec:
        raise ValueError(f"unknown policy {spec!r}: use one of {list(BUILTIN_POLICIES)} or 'package.module:factory'")
    mod_name, attr = spec.split(":", 1)
    factory = getattr(importlib.import_module(mod_name), attr)
    policy = factory(seed)
    if not callable(policy):
        raise TypeError(f"policy factory {spec!r} returned a non-callable {type(policy).__name__}")
    return policy
