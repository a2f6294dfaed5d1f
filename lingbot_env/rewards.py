"""The reward protocol of the generated-world envs: what ``reward_fn`` and ``termination_fn`` are, and their hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RewardFn(Protocol):
    """What ``reward_fn`` is: ``reward_fn(obs, action, info) -> float``.

    ``obs`` uint8 [H, W, 3] (the step's last frame), ``action`` float32 [6] (as applied, after clipping), ``info``
    the step's info dict (``frames``, ``pose``, ...). ``termination_fn`` has the same shape and returns a bool.

    Optional hooks, for stateful and learned reward heads (the protocol later issues plug into):

    * ``reset(obs, info) -> None``: called at every episode start (``info`` is the reset info), e.g. to clear a
      novelty memory or to embed the start frame once.
    * ``batch(obs [N, H, W, 3], actions [N, 6], info) -> array [N]``: used by the vector env instead of N calls,
      so a learned head runs one batched forward pass; ``info`` holds arrays with a leading env dimension.
    """

    def __call__(self, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> float: ...


TerminationFn = Callable[[np.ndarray, np.ndarray, dict[str, Any]], bool]


def call_reset_hook(fn: Any, obs: np.ndarray, info: dict[str, Any]) -> None:
    hook = getattr(fn, "reset", None)
    if callable(hook):
        hook(obs, info)


class ExploreCells:
    """The exploration reward's bookkeeping: +1 the first time a position falls in a ``cell`` x ``cell`` square
    of the map (Doom map units). The real game env counts it per video frame from the engine's pose; the world's
    learned reward counts it from the poses its step heads integrate: one definition for both."""

    def __init__(self, cell: float = 64.0) -> None:
        if cell <= 0:
            raise ValueError(f"the explore cell must be > 0 map units, got {cell}")
        self.cell = float(cell)
        self.visited: set[tuple[int, int]] = set()

    def reset(self) -> None:
        self.visited = set()

    def visit(self, x: float, y: float) -> int:
        """1 if ``(x, y)`` is in a cell not visited before (and marks it), else 0."""
        key = (int(x // self.cell), int(y // self.cell))
        if key in self.visited:
            return 0
        self.visited.add(key)
        return 1


# -- the player's motion: what the step heads learn (from the game's poses) and the env integrates back ------------
def step_motion(poses: np.ndarray, frames_per_step: int = 4) -> np.ndarray:
    """The player's motion per step ``[n, 2]`` (forward, right) in map units, in its frame at the step's start,
    from poses ``[1 + 4n, 5]`` (x, y, z, yaw degrees counter-clockwise from +x, pitch) as the game env reports."""
    start, end = poses[:-1:frames_per_step], poses[frames_per_step::frames_per_step]
    d = end[:, :2] - start[:, :2]
    yaw = np.deg2rad(start[:, 3])
    fwd = d[:, 0] * np.cos(yaw) + d[:, 1] * np.sin(yaw)
    right = d[:, 0] * np.sin(yaw) - d[:, 1] * np.cos(yaw)
    return np.stack([fwd, right], axis=1).astype(np.float32)


def integrate(start_xy: np.ndarray, yaws_deg: np.ndarray, motion: np.ndarray, frames_per_step: int = 4) -> np.ndarray:
    """Positions ``[4n + 1, 2]`` from a start ``[2]``, each step's start yaw ``[n]`` and motion ``[n, 2]``
    (forward, right): the inverse of :func:`step_motion`, spread evenly over the step's video frames, since the
    game counts cells per frame."""
    yaw = np.deg2rad(np.asarray(yaws_deg, np.float64))
    motion = np.asarray(motion, np.float64).reshape(-1, 2)
    dx = motion[:, 0] * np.cos(yaw) + motion[:, 1] * np.sin(yaw)
    dy = motion[:, 0] * np.sin(yaw) - motion[:, 1] * np.cos(yaw)
    per_frame = np.repeat(np.stack([dx, dy], 1) / frames_per_step, frames_per_step, axis=0)
    start = np.asarray(start_xy, np.float64).reshape(1, 2)
    return np.concatenate([start, start + np.cumsum(per_frame, axis=0)])


def explore_return(positions: np.ndarray, cell: float) -> int:
    """The exploration return of a path ``[F, 2]``: cells entered after the start's."""
    cells = ExploreCells(cell)
    cells.visit(*positions[0])
    return sum(cells.visit(x, y) for x, y in positions[1:])


class LearnedExplore:
    """The exploration reward of ``n`` generated worlds from their step heads' motion.

    Each world keeps a position and a yaw in Doom map units and degrees (starting at the origin, yaw 0: cells are
    counted relative to the start, which changes no count but the grid's phase); a step turns the yaw by the
    action's turn (turning is never blocked in the game, so the commanded turn is the real one) and moves the
    position by the heads' motion, spread over the step's frames, counting newly entered cells as the game does."""

    def __init__(self, n: int, cell: float, turn_deg_per_frame: float, frames_per_step: int = 4) -> None:
        self.n, self.cell, self.turn, self.fps = n, cell, turn_deg_per_frame, frames_per_step
        self.xy = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self.cells = [ExploreCells(cell) for _ in range(n)]
        self.reset()

    def reset(self, rows=None) -> None:
        for r in range(self.n) if rows is None else rows:
            self.xy[r], self.yaw[r] = 0.0, 0.0
            self.cells[r].reset()
            self.cells[r].visit(0.0, 0.0)

    def step(self, motion: np.ndarray, actions: np.ndarray, rows=None) -> np.ndarray:
        """Rewards ``[len(rows)]`` for motion ``[len(rows), 2]`` (forward, right) and actions ``[len(rows), 6]``."""
        rows = list(range(self.n)) if rows is None else list(rows)
        out = np.zeros(len(rows))
        for i, r in enumerate(rows):
            path = integrate(self.xy[r], self.yaw[r : r + 1], motion[i], self.fps)
            out[i] = sum(self.cells[r].visit(x, y) for x, y in path[1:])
            self.xy[r] = path[-1]
            # yaw > 0 turns right; the game's yaw is counter-clockwise, so it decreases.
            self.yaw[r] -= float(actions[i][4]) * self.turn * self.fps
        return out


def learned_explore_for(world, n: int) -> LearnedExplore | None:
    """The learned exploration reward of a world whose bundle has step heads (None without heads)."""
    heads = getattr(world, "heads", None)
    if heads is None:
        return None
    ctl = world.spec.control
    return LearnedExplore(n, heads.cfg.explore_cell, ctl.turn_deg_per_frame, ctl.frames_per_latent)


def reward_source(reward_fn, learned: LearnedExplore | None) -> str:
    """What ``info["reward_source"]`` says: a user's ``reward_fn`` overrides the bundle's heads."""
    return "reward_fn" if reward_fn is not None else "heads" if learned is not None else "none"


def termination_source(termination_fn, world) -> str:
    """What ``info["termination_source"]`` says: a user's ``termination_fn`` overrides the bundle's end head, which
    ends episodes only when its config says it may (``StepHeadsConfig.terminates``, set from its held-out scores)."""
    if termination_fn is not None:
        return "termination_fn"
    heads = getattr(world, "heads", None)
    return "heads" if heads is not None and heads.cfg.terminates else "none"
