"""Scripted action patterns: ``pattern(n, rng) -> float32 [n, 6]`` = ``[W, A, S, D, yaw, pitch]`` per step.

Each pattern isolates one kind of control (walking, turning, strafing, looking) so that the report shows which
of them a model follows; ``mix`` chains short segments of all of them like a player would. Magnitudes are drawn
from ``rng`` (reproducible per clip), directions of the one-sided patterns are fixed by their name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lingbot_env.actions import make_action

Pattern = Callable[[int, np.random.Generator], np.ndarray]


def _hold(n: int, action: np.ndarray) -> np.ndarray:
    return np.repeat(action[None].astype(np.float32), n, axis=0)


def forward(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(w=True))


def backward(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(s=True))


def turn_left(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(yaw=-float(rng.uniform(0.5, 1.0))))


def turn_right(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(yaw=float(rng.uniform(0.5, 1.0))))


def strafe_left(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(a=True))


def strafe_right(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action(d=True))


def forward_turn(n: int, rng: np.random.Generator) -> np.ndarray:
    sign = float(rng.choice([-1.0, 1.0]))
    return _hold(n, make_action(w=True, yaw=sign * float(rng.uniform(0.3, 0.8))))


def look(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pitch up for the first half, back down for the second (the real game clamps pitch at 32 up / 56 down)."""
    speed = float(rng.uniform(0.5, 1.0))
    half = (n + 1) // 2
    return np.concatenate([_hold(half, make_action(pitch=speed)), _hold(n - half, make_action(pitch=-speed))])


def still(n: int, rng: np.random.Generator) -> np.ndarray:
    return _hold(n, make_action())


_PRIMITIVES: tuple[Pattern, ...] = (forward, backward, turn_left, turn_right, strafe_left, strafe_right, forward_turn)


def mix(n: int, rng: np.random.Generator) -> np.ndarray:
    """Segments of 2-4 steps of the other patterns (and short looks), like a player changing their mind."""
    parts: list[np.ndarray] = []
    total = 0
    while total < n:
        length = int(rng.integers(2, 5))
        if rng.random() < 0.15:
            seg = _hold(length, make_action(pitch=float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.3, 0.8))))
        else:
            seg = _PRIMITIVES[int(rng.integers(len(_PRIMITIVES)))](length, rng)
        parts.append(seg)
        total += length
    return np.concatenate(parts)[:n]


PATTERNS: dict[str, Pattern] = {
    "forward": forward,
    "backward": backward,
    "turn_left": turn_left,
    "turn_right": turn_right,
    "strafe_left": strafe_left,
    "strafe_right": strafe_right,
    "forward_turn": forward_turn,
    "look": look,
    "mix": mix,
    "still": still,
}


# Which way a pattern walks, in degrees from the view direction (Doom angles: counter-clockwise, so left = +90).
# Clips of these patterns start only where that way is open: walking into a wall from the first step would test
# nothing (the keys leave no trace in the real frames either).
MOVE_DIRECTIONS: dict[str, float] = {
    "forward": 0.0,
    "forward_turn": 0.0,
    "backward": 180.0,
    "strafe_left": 90.0,
    "strafe_right": -90.0,
}


def scripted_actions(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` steps of pattern ``name`` -> float32 [n, 6]; ``ValueError`` for an unknown name."""
    if name not in PATTERNS:
        raise ValueError(f"unknown action pattern {name!r}; known: {sorted(PATTERNS)}")
    if n < 1:
        raise ValueError(f"a pattern needs n >= 1 steps, got {n}")
    out = PATTERNS[name](n, rng)
    assert out.shape == (n, 6), (name, out.shape)
    return out.astype(np.float32)


def check_patterns(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [p for p in names if p not in PATTERNS]
    if unknown:
        raise ValueError(f"unknown action patterns {unknown}; known: {sorted(PATTERNS)}")
    return tuple(names)
