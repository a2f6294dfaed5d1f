"""The one action definition shared by the real game (``ViZDoomWASD-v0``) and the generated world.

An action is a float32 vector ``[W, A, S, D, yaw, pitch]`` held for one env step (one latent frame =
``frames_per_step`` video frames):

- ``W, A, S, D`` in ``[0, 1]``: a key counts as pressed when its value is ``> key_threshold`` (0.5).
  W = forward, S = backward, A = strafe left, D = strafe right (the WASD multi-hot order of docs/official_models.md §6).
- ``yaw, pitch`` in ``[-1, 1]``: a fraction of the maximum turn rate per *video frame*
  (``ActionSpec.max_yaw_deg_per_frame`` / ``max_pitch_deg_per_frame``, 2 degrees by default, the rate of
  the official keyboard-to-camera mapping, so ``yaw = 1`` equals holding the official turn key).

Sign convention (the same everywhere in this project):

- ``yaw > 0`` turns the view to the **right** (clockwise seen from above, like moving a mouse right).
- ``pitch > 0`` tilts the view **up**.

This module imports only numpy (gymnasium lazily, for :meth:`ActionSpec.action_space`) so that the
generated-world env can use it without pulling in ViZDoom.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from gymnasium import spaces

    from world_model.world import InteractiveWorld

KEYS: tuple[str, ...] = ("W", "A", "S", "D")
ACTION_NAMES: tuple[str, ...] = (*KEYS, "yaw", "pitch")
ACTION_DIM = len(ACTION_NAMES)
YAW, PITCH = 4, 5


@dataclass(frozen=True)
class ActionSpec:
    """How an action vector is interpreted.

    Args:
        max_yaw_deg_per_frame: yaw turn (degrees) per video frame when ``yaw == +-1``.
        max_pitch_deg_per_frame: pitch turn (degrees) per video frame when ``pitch == +-1``.
        frames_per_step: video frames per env step (per latent frame); the action is held for all of them.
        key_threshold: a key value strictly above this counts as pressed.
        pitch_limit_deg: absolute pitch clamp for generated worlds (docs/official_models.md §7: +-85 degrees). The real
            game clamps tighter on its own (ViZDoom's software renderer: 32 degrees up, 56 down).
    """

    max_yaw_deg_per_frame: float = 2.0
    max_pitch_deg_per_frame: float = 2.0
    frames_per_step: int = 4
    key_threshold: float = 0.5
    pitch_limit_deg: float = 85.0

    def __post_init__(self) -> None:
        if not (self.max_yaw_deg_per_frame > 0 and self.max_pitch_deg_per_frame > 0):
            raise ValueError("ActionSpec: max_yaw_deg_per_frame and max_pitch_deg_per_frame must be > 0")
        if int(self.frames_per_step) != self.frames_per_step or self.frames_per_step < 1:
            raise ValueError(f"ActionSpec: frames_per_step must be a positive int, got {self.frames_per_step}")
        if not 0.0 <= self.key_threshold < 1.0:
            raise ValueError(f"ActionSpec: key_threshold must be in [0, 1), got {self.key_threshold}")

    @property
    def low(self) -> np.ndarray:
        """float32 [6]: lower bounds of the action Box."""
        return np.array([0, 0, 0, 0, -1, -1], dtype=np.float32)

    @property
    def high(self) -> np.ndarray:
        """float32 [6]: upper bounds of the action Box."""
        return np.ones(ACTION_DIM, dtype=np.float32)

    def action_space(self) -> spaces.Box:
        """The gymnasium ``Box(low=[0,0,0,0,-1,-1], high=1, shape=(6,), float32)``."""
        from gymnasium import spaces

        return spaces.Box(low=self.low, high=self.high, shape=(ACTION_DIM,), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionSpec:
        return cls(**d)


DEFAULT_SPEC = ActionSpec()


class Controls(NamedTuple):
    """An action decoded for one video frame.

    keys: float32 [4] multi-hot (W, A, S, D), exactly 0.0 or 1.0.
    yaw_deg: degrees to turn during this frame, > 0 = right.
    pitch_deg: degrees to tilt during this frame, > 0 = up.
    """

    keys: np.ndarray
    yaw_deg: float
    pitch_deg: float


def _as_float_array(action: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric, got {type(action).__name__}: {e}") from e
    return arr


def validate_action(action: Any) -> np.ndarray:
    """Check one action and return it as float32 [6].

    Raises ``ValueError`` for a wrong shape (anything but 6 numbers) and for NaN / inf entries.
    Keys are clipped to [0, 1] and yaw/pitch to [-1, 1], because RL policies (e.g. Gaussian ones)
    routinely emit slightly out-of-range values and clipping is the Box convention.
    """
    arr = _as_float_array(action, "action")
    if arr.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},) = [W, A, S, D, yaw, pitch], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = [ACTION_NAMES[i] for i in np.flatnonzero(~np.isfinite(arr))]
        raise ValueError(f"action contains NaN or inf in {bad}: {arr.tolist()}")
    return np.clip(arr, DEFAULT_SPEC.low, DEFAULT_SPEC.high).astype(np.float32)


def validate_actions(actions: Any) -> np.ndarray:
    """Batch version of :func:`validate_action`: ``[..., 6]`` -> float32 ``[..., 6]``."""
    arr = _as_float_array(actions, "actions")
    if arr.ndim == 0 or arr.shape[-1] != ACTION_DIM:
        raise ValueError(f"actions must have shape [..., {ACTION_DIM}], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("actions contain NaN or inf")
    return np.clip(arr, DEFAULT_SPEC.low, DEFAULT_SPEC.high).astype(np.float32)


def action_to_controls(action: Any, spec: ActionSpec = DEFAULT_SPEC) -> Controls:
    """Decode one action into per-video-frame controls (keys multi-hot [4], yaw_deg, pitch_deg)."""
    a = validate_action(action)
    keys = (a[:4] > spec.key_threshold).astype(np.float32)
    return Controls(
        keys=keys,
        yaw_deg=float(a[YAW]) * spec.max_yaw_deg_per_frame,
        pitch_deg=float(a[PITCH]) * spec.max_pitch_deg_per_frame,
    )


def split_actions(actions: Any, spec: ActionSpec = DEFAULT_SPEC) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch decode ``[..., 6]`` actions.

    Returns:
        keys: float32 [..., 4] multi-hot (W, A, S, D).
        yaw_deg: float32 [...] degrees per video frame (> 0 = right).
        pitch_deg: float32 [...] degrees per video frame (> 0 = up).
    """
    a = validate_actions(actions)
    keys = (a[..., :4] > spec.key_threshold).astype(np.float32)
    yaw = (a[..., YAW] * spec.max_yaw_deg_per_frame).astype(np.float32)
    pitch = (a[..., PITCH] * spec.max_pitch_deg_per_frame).astype(np.float32)
    return keys, yaw, pitch


def make_action(
    w: bool = False,
    a: bool = False,
    s: bool = False,
    d: bool = False,
    yaw: float = 0.0,
    pitch: float = 0.0,
) -> np.ndarray:
    """Build an action vector float32 [6] from named keys and turn fractions."""
    return validate_action([float(w), float(a), float(s), float(d), yaw, pitch])


NOOP = make_action()


# -- checking actions given to the generated-world envs ------------------------------------------------------
ACTION_CLIP_MODES = ("clip_warn", "clip", "error")


class ActionClippedWarning(UserWarning):
    """An action outside the Box was clipped (``action_clip="clip_warn"``). Filter it to silence it, or use
    ``action_clip="clip"``."""


def _is_zero(value: Any) -> bool:
    try:
        return not isinstance(value, (str, bytes)) and complex(value) == 0
    except (TypeError, ValueError):
        return False


def _bad_kind(arr: np.ndarray) -> str | None:
    """``"strings"`` / ``"complex numbers"`` / ``"objects (...)"`` when ``arr`` is not real numbers, else None."""
    if arr.dtype.kind in "USa":
        return "strings"
    if arr.dtype.kind == "c":
        return "complex numbers"
    if arr.dtype.kind == "O":
        types = {type(v).__name__ for v in arr.flat}
        if any(isinstance(v, (str, bytes)) for v in arr.flat):
            return "strings"
        if any(isinstance(v, (complex, np.complexfloating)) for v in arr.flat):
            return "complex numbers"
        if not all(isinstance(v, (int, float, bool, np.number, np.bool_)) for v in arr.flat):
            return f"objects ({', '.join(sorted(types))})"
    if arr.dtype.kind not in "biufO":
        return f"{arr.dtype} values"
    return None


def check_actions(actions: Any, num_envs: int | None, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one action ``[6]`` (``num_envs=None``) or a batch ``[num_envs, 6]``.

    Returns ``(actions float32, clipped bool [] or [num_envs])``. A wrong shape, strings, complex numbers, other
    non-numeric values, NaN or inf raise ``ValueError``; a single env also takes the scalar 0 as the no-op (what
    ``gymnasium.utils.play.play`` sends while no key is held). Values outside the Box (keys [0, 1], yaw/pitch
    [-1, 1]) are clipped (``"clip"``),
    clipped with an :class:`ActionClippedWarning` (``"clip_warn"``) or refused with ``ValueError`` (``"error"``).
    """
    what = "action" if num_envs is None else "actions"
    if num_envs is None and np.ndim(actions) == 0 and _is_zero(actions):
        actions = np.zeros(ACTION_DIM)  # the no-op that gymnasium.utils.play sends while no mapped key is held
    try:
        raw = np.asarray(actions)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric [W, A, S, D, yaw, pitch], got {type(actions).__name__}: {e}") from e
    kind = _bad_kind(raw)
    if kind is not None:
        fix = {
            "strings": "convert them first, e.g. np.asarray(action, dtype=np.float32)",
            "complex numbers": "pass the real parts (np.real(action)) if that is what you mean",
        }.get(kind, "pass a list or array of 6 floats")
        raise ValueError(
            f"{what} must be numeric (real numbers) [W, A, S, D, yaw, pitch], got {kind} "
            f"({np.asarray(raw).tolist()!r:.80}); {fix}"
        )
    try:
        arr = raw.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric [W, A, S, D, yaw, pitch], got {type(actions).__name__}: {e}") from e
    want = (ACTION_DIM,) if num_envs is None else (num_envs, ACTION_DIM)
    if arr.shape != want:
        raise ValueError(f"{what} must have shape {want} ([W, A, S, D, yaw, pitch] per env), got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = sorted({ACTION_NAMES[i] for i in np.argwhere(~finite)[:, -1]}, key=ACTION_NAMES.index)
        raise ValueError(f"{what} contains NaN or inf in {bad}: {arr.tolist()}")
    low, high = DEFAULT_SPEC.low, DEFAULT_SPEC.high
    outside = (arr < low) | (arr > high)
    clipped = outside.any(axis=-1)
    if outside.any():
        bad = sorted({ACTION_NAMES[i] for i in np.argwhere(outside)[:, -1]}, key=ACTION_NAMES.index)
        if mode == "error":
            raise ValueError(
                f"{what} out of range in {bad}: {arr.tolist()}; keys W, A, S, D must be in [0, 1] and yaw, pitch in "
                "[-1, 1] (or construct the env with action_clip='clip_warn' to clip instead)"
            )
        if mode == "clip_warn":
            # A constant message: Python's warning filter then shows it once per call site, not every step.
            warnings.warn(
                "action outside the Box clipped (keys to [0, 1], yaw/pitch to [-1, 1]); info['action'] holds the "
                "applied action. Use action_clip='clip' to silence this or 'error' to refuse such actions.",
                ActionClippedWarning,
                stacklevel=3,
            )
        arr = np.clip(arr, low, high)
    return arr.astype(np.float32), clipped


def action_spec_for(world: InteractiveWorld) -> ActionSpec:
    """The shared :class:`ActionSpec` with this world's turn rate, chunk length, key threshold and pitch limit."""
    spec = world.spec
    c = spec.control
    if c is None:
        return ActionSpec(frames_per_step=spec.frames_per_step)
    return ActionSpec(
        max_yaw_deg_per_frame=c.turn_deg_per_frame,
        max_pitch_deg_per_frame=c.turn_deg_per_frame,
        frames_per_step=spec.frames_per_step,
        key_threshold=c.key_threshold,
        pitch_limit_deg=c.pitch_limit_deg,
    )


def keys_to_action() -> dict[tuple[int, ...], np.ndarray]:
    """All combinations of the play keys (:data:`lingbot_env.human.TRACKED_KEYS`) -> their action (the empty one,
    which ``play`` cannot take as a key, is its ``noop`` 0)."""
    from itertools import combinations

    from lingbot_env.human import TRACKED_KEYS, InputState

    keys = sorted(TRACKED_KEYS)
    table: dict[tuple[int, ...], np.ndarray] = {}
    state = InputState()
    for n in range(1, len(keys) + 1):
        for combo in combinations(keys, n):
            state.pressed = set(combo)
            table[combo] = state.action()
    return table
