"""``LingBotWorld-v0``: the generated world (an :class:`~world_model.world.InteractiveWorld`) as a Gymnasium env.

This module holds the single env and the pieces the batched one (:mod:`lingbot_env.vector_env`) shares with it:
model resolution, start-image preparation, action checking, camera-pose integration and the reward protocol.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from lingbot_env.actions import ACTION_DIM, ACTION_NAMES, DEFAULT_SPEC, ActionSpec

if TYPE_CHECKING:
    from lingbot_env.human import HumanRenderer
    from world_model.world import InteractiveWorld

ModelArg = Union[None, str, os.PathLike, "InteractiveWorld", Callable[..., "InteractiveWorld"]]
ImageArg = np.ndarray | str | os.PathLike | Any  # Any: a PIL image (PIL is imported only when used)

ACTION_CLIP_MODES = ("clip_warn", "clip", "error")
FACTORY_PREFIX = "factory:"  # model="factory:package.module:function" imports that module and calls the function
_FACTORY_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class ActionClippedWarning(UserWarning):
    """An action outside the Box was clipped (``action_clip="clip_warn"``). Filter it to silence it, or use
    ``action_clip="clip"``."""


# ----------------------------------------------------------------------------------------- reward protocol
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


# ----------------------------------------------------------------------------------------- model resolution
def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16" | "bf16" | "float16" | "fp16" | "half" | "float32" | "fp32" | torch.dtype | None``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float": torch.float32,
    }
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or a torch.dtype")
    return names[key]


def _call_factory(factory: Callable[..., Any], batch_size: int) -> Any:
    # A factory that takes batch_size gets it, so one factory serves the single env and any vector env size.
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    return factory(batch_size=batch_size) if "batch_size" in params else factory()


def _import_factory(spec: str) -> Callable[..., Any]:
    """``"factory:package.module:function"`` -> that function. Importing the module runs its code."""
    target = spec.removeprefix(FACTORY_PREFIX)
    if not _FACTORY_SPEC.fullmatch(target):
        raise ValueError(f"model={spec!r}: a factory is {FACTORY_PREFIX!r} + 'package.module:function'")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model={spec!r}: cannot import module {module_name!r} ({e})") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model={spec!r}: {module_name} has no callable {attr!r}")
    return factory


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or ``ValueError`` saying what to use when it does not exist here (CUDA asked
    for on a machine or a torch build without it, a GPU index beyond the count)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                f"this torch ({torch.__version__}) is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)"
            )
            raise ValueError(f"device={device!r}, but {why}; use device='cpu' (or install a CUDA build of torch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}, but MPS is not available here; use device='cpu'")
    return dev


def default_num_threads() -> int:
    """The torch CPU threads the env and the CLI use unless told otherwise: half the cores, at most 4, at least 1.

    The worlds here are small per step (the Doom model's DiT has 48 tokens), so more threads gain little even on
    an idle machine, while one thread per core loses badly as soon as another process takes a core: torch's
    threads wait for each other at every op (measured on 2 cores beside a CPU burner: 7.5 s per step with torch's
    2 threads, 0.24 s with 1; ``benchmarks/busy_cpu_threads.py``)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def apply_num_threads(num_threads: int | str | None, device: str | torch.device = "cpu") -> int:
    """Set torch's CPU threads for ``num_threads``: ``"auto"`` lowers them to :func:`default_num_threads` (only for
    a CPU device, and not when ``OMP_NUM_THREADS`` is set); an int sets them; None leaves torch's choice. The
    setting is process-wide (torch has no other). Returns the thread count in force."""
    if num_threads is None:
        return torch.get_num_threads()
    if num_threads == "auto":
        try:
            on_cpu = torch.device(device).type == "cpu"
        except (RuntimeError, TypeError):
            on_cpu = False  # a bad device string is reported where the world loads
        if on_cpu and not os.environ.get("OMP_NUM_THREADS"):
            want = min(torch.get_num_threads(), default_num_threads())
            if want != torch.get_num_threads():
                torch.set_num_threads(want)
        return torch.get_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be 'auto', None or an int >= 1, got {num_threads!r}")
    torch.set_num_threads(int(num_threads))
    return torch.get_num_threads()


def resolve_world(
    model: ModelArg,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    batch_size: int = 1,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[InteractiveWorld, bool]:
    """Turn the env's ``model`` argument into an :class:`InteractiveWorld` of ``batch_size`` rows.

    Returns ``(world, owned)``: ``owned`` is False for a world the caller built (the env must not close it).

    * an ``InteractiveWorld``: used as is (``device``/``dtype`` are ignored: it already lives somewhere);
    * a callable: a factory returning one, called with ``batch_size=`` when it has that parameter, else with none;
    * ``"factory:package.module:function"``: that factory, imported and called. This runs that module's code, as
      an import does: pass only names you would import yourself. Without the ``factory:`` prefix such a string
      is never imported;
    * ``None``, a preset name or a folder: ``world_model.bundle.load_world(model, device=, dtype=, batch_size=,
      **model_kwargs)`` (e.g. ``model_kwargs={"size": (720, 1280)}`` for a LingBot release root).
    """
    from world_model.world import InteractiveWorld

    owned = True
    if not isinstance(model, InteractiveWorld):
        check_device(device)  # before any loading: torch's own error for a missing CUDA is a bare AssertionError
    if isinstance(model, InteractiveWorld):
        world, owned = model, False
    elif isinstance(model, str) and model.startswith(FACTORY_PREFIX):
        world = _call_factory(_import_factory(model), batch_size)
    elif isinstance(model, str) and _FACTORY_SPEC.fullmatch(model) and not Path(model).exists():
        raise ValueError(
            f"model={model!r} is neither a folder nor a preset name. To import and call a factory (this runs the "
            f"module's code) write model='{FACTORY_PREFIX}{model}'; for random weights that run offline use "
            "model='doom-untrained'"
        )
    elif model is None or isinstance(model, (str, os.PathLike)):
        try:
            from world_model.bundle import load_world
        except ImportError as e:
            if e.name not in ("world_model.bundle", "world_model"):
                raise
            raise ImportError(
                "world_model.bundle.load_world is not available in this checkout, so model=None / a preset name / "
                "a folder cannot be loaded; pass model= an InteractiveWorld or a factory returning one"
            ) from e
        world = load_world(
            model, device=device, dtype=parse_dtype(dtype), batch_size=batch_size, seed=seed, **(model_kwargs or {})
        )
    elif callable(model):
        world = _call_factory(model, batch_size)
    else:
        raise TypeError(
            "model must be None (the default small model), a preset name, a model folder, an InteractiveWorld or "
            f"a zero-argument factory returning one; got {type(model).__name__}"
        )
    if not isinstance(world, InteractiveWorld):
        raise TypeError(f"the model factory returned {type(world).__name__}, not an InteractiveWorld")
    if world.batch_size != batch_size:
        raise ValueError(
            f"the world has batch_size={world.batch_size} but {batch_size} env(s) were asked for: build it with "
            f"batch_size={batch_size} (a factory with a batch_size parameter gets it automatically)"
        )
    return world, owned


# ----------------------------------------------------------------------------------------- images and prompts
def load_image(image: ImageArg, what: str = "image") -> np.ndarray:
    """A numpy ``uint8 [H, W, 3]`` array, a PIL image (any mode, converted to RGB) or an image file path ->
    ``uint8 [H, W, 3]``. Anything else raises ``TypeError``/``ValueError`` saying how to fix it."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {str(path)!r}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return np.array(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"cannot read {what} file {str(path)!r} as an image: {e}") from e
    if type(image).__module__.startswith("PIL."):
        return np.array(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{what} must be a numpy uint8 array [H, W, 3], a PIL image or a file path; got {type(image).__name__}"
            + (" (did you mean reset(seed=...)?)" if isinstance(image, (int, np.integer)) else "")
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{what} must have dtype uint8 (0..255), got {image.dtype}; for floats in [0, 1] use "
            "(img * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        raise ValueError(
            f"{what} is grayscale {image.shape}; give [H, W, 3] RGB, e.g. np.repeat(img[..., None], 3, -1)"
        )
    if image.ndim != 3:
        raise ValueError(f"{what} must be [H, W, 3] (one RGB image), got shape {image.shape}")
    if image.shape[2] != 3:
        hint = " (channels-first? use img.transpose(1, 2, 0))" if image.shape[0] == 3 else ""
        hint = " (RGBA? drop alpha with img[..., :3])" if image.shape[2] == 4 else hint
        raise ValueError(f"{what} must have 3 channels (RGB) last: [H, W, 3], got shape {image.shape}{hint}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover, then center crop: ``uint8 [h, w, 3]`` -> ``uint8 [height, width, 3]``.

    The image is resized (PIL bicubic, antialiased when shrinking) by ``s = max(height / h, width / w)`` to
    ``(max(height, round(h * s)), max(width, round(w * s)))``, so it covers the target with its aspect ratio kept;
    then the centre ``height x width`` window is cut out (offsets rounded down). An image already at the target
    size is returned unchanged (copied).
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.array(image, copy=True)
    from PIL import Image

    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BICUBIC))
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.array(resized[top : top + height, left : left + width], copy=True)


def prepare_image(image: ImageArg, height: int, width: int, what: str = "image") -> np.ndarray:
    """:func:`load_image` then :func:`fit_image`: the start observation ``uint8 [height, width, 3]``."""
    return fit_image(load_image(image, what), height, width)


def check_env_args(render_modes, render_mode, action_clip, max_episode_steps, reward_fn, termination_fn) -> None:
    """Constructor arguments shared by the single and the vector env, checked before the (slow) model load."""
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be None or one of {render_modes}, got {render_mode!r}")
    if action_clip not in ACTION_CLIP_MODES:
        raise ValueError(f"action_clip must be one of {ACTION_CLIP_MODES}, got {action_clip!r}")
    if max_episode_steps is not None and (int(max_episode_steps) != max_episode_steps or max_episode_steps < 1):
        raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
    for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable (obs, action, info) -> value, got {type(fn).__name__}")


def check_prompt(prompt: Any, what: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"{what} must be a str, got {type(prompt).__name__}: {prompt!r:.60}")
    return prompt


# ----------------------------------------------------------------------------------------- actions
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


# ----------------------------------------------------------------------------------------- camera pose
class PoseTracker:
    """Camera poses of ``batch_size`` players, integrated per video frame with the official keyboard-to-camera
    mapping (:class:`world_model.control.KeyboardCamera`, vectorised over rows in numpy).

    Per video frame: ``yaw += yaw_action * turn_deg``; ``pitch = clip(pitch + pitch_action * turn_deg, +-max)``;
    W/S move ``step`` along the ground-plane forward vector and A/D along the right vector. Poses are
    camera-to-world ``[4, 4]`` in OpenCV axes (x right, y down, z forward), yaw > 0 = turned right, pitch > 0 = up.
    """

    def __init__(
        self,
        batch_size: int,
        frames_per_step: int,
        step: float = 0.05,
        turn_deg: float = 2.0,
        max_pitch_deg: float = 85.0,
        key_threshold: float = 0.5,
    ) -> None:
        self.batch_size, self.frames_per_step = batch_size, frames_per_step
        self.step, self.turn_deg, self.max_pitch_deg, self.key_threshold = step, turn_deg, max_pitch_deg, key_threshold
        self.position = np.zeros((batch_size, 3))
        self.yaw = np.zeros(batch_size)
        self.pitch = np.zeros(batch_size)

    @classmethod
    def for_world(cls, world: InteractiveWorld) -> PoseTracker:
        c = world.spec.control
        kw = {} if c is None else dict(step=c.cam_step, turn_deg=c.turn_deg_per_frame, max_pitch_deg=c.pitch_limit_deg)
        return cls(world.batch_size, world.spec.frames_per_step, **kw)

    def reset(self, rows: Sequence[int] | None = None) -> None:
        idx = slice(None) if rows is None else list(rows)
        self.position[idx], self.yaw[idx], self.pitch[idx] = 0.0, 0.0, 0.0

    @staticmethod
    def matrices(yaw_deg: np.ndarray, pitch_deg: np.ndarray, position: np.ndarray) -> np.ndarray:
        """``[n]``, ``[n]``, ``[n, 3]`` -> camera-to-world ``[n, 4, 4]`` = ``R_yaw @ R_pitch``, translation."""
        y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
        cy, sy, cp, sp = np.cos(y), np.sin(y), np.cos(p), np.sin(p)
        out = np.zeros((len(y), 4, 4))
        # R_yaw = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]; R_pitch = [[1, 0, 0], [0, cp, -sp], [0, sp, cp]].
        out[:, 0] = np.stack([cy, sy * sp, sy * cp, position[:, 0]], -1)
        out[:, 1] = np.stack([np.zeros_like(y), cp, -sp, position[:, 1]], -1)
        out[:, 2] = np.stack([-sy, cy * sp, cy * cp, position[:, 2]], -1)
        out[:, 3, 3] = 1.0
        return out

    def pose(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Current poses ``float32 [n, 4, 4]``."""
        idx = slice(None) if rows is None else list(rows)
        return self.matrices(self.yaw[idx], self.pitch[idx], self.position[idx]).astype(np.float32)

    def advance(self, actions: np.ndarray, rows: Sequence[int] | None = None, frames: int | None = None) -> np.ndarray:
        """Hold ``actions`` ``[n, 6]`` for one step of ``frames`` video frames (default ``frames_per_step``; LingBot
        Fast's first chunk has fewer); returns their poses ``float32 [n, frames, 4, 4]``."""
        idx = np.arange(self.batch_size) if rows is None else np.asarray(list(rows), dtype=np.int64)
        frames = self.frames_per_step if frames is None else frames
        keys = (actions[:, :4] > self.key_threshold).astype(np.float64)
        forward, right = keys[:, 0] - keys[:, 2], keys[:, 3] - keys[:, 1]
        out = np.empty((len(idx), frames, 4, 4), dtype=np.float32)
        for f in range(frames):
            self.yaw[idx] += actions[:, 4] * self.turn_deg
            self.pitch[idx] = np.clip(
                self.pitch[idx] + actions[:, 5] * self.turn_deg, -self.max_pitch_deg, self.max_pitch_deg
            )
            th = np.deg2rad(self.yaw[idx])
            fwd = np.stack([np.sin(th), np.zeros_like(th), np.cos(th)], -1)
            rgt = np.stack([np.cos(th), np.zeros_like(th), -np.sin(th)], -1)
            self.position[idx] += self.step * (forward[:, None] * fwd + right[:, None] * rgt)
            out[:, f] = self.matrices(self.yaw[idx], self.pitch[idx], self.position[idx])
        return out

    def yaw_pitch(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Accumulated ``(yaw, pitch)`` in degrees, ``float32 [n, 2]``."""
        idx = slice(None) if rows is None else list(rows)
        return np.stack([self.yaw[idx], self.pitch[idx]], -1).astype(np.float32)


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


def render_rates(spec: Any) -> dict[str, Any]:
    """``render_fps``: ``render()`` frames per second of real time, an int as Gymnasium's tools want (``play``
    paces its loop with it, ``RecordVideo`` writes one frame per step at it): the step rate, rounded, at least 1.
    ``video_fps``: the model's video frame rate (every step makes ``frames_per_step`` frames), for all-frame video
    (``info["frames"]``, the CLI's ``--record``, the human window)."""
    return {"render_fps": max(1, round(spec.fps / spec.frames_per_step)), "video_fps": float(spec.fps)}


def release_cuda_memory() -> None:
    """Return cached CUDA blocks once the world's tensors are unreferenced (cycles collected first)."""
    if torch.cuda.is_available():
        import gc

        gc.collect()
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------- the env
class LingBotWorldEnv(gym.Env[np.ndarray, np.ndarray]):
    """A generated world you walk through: LingBot-World / Wan2.2-style video world model, streamed in real time.

    ## Description
    ``reset`` starts the world from an image (and a text prompt); every ``step`` holds one action for one chunk
    of the streaming model (``block_frames`` latent frames = ``4 * block_frames`` video frames), generates that
    chunk against the model's KV cache, decodes it with the streaming decoder and returns its last frame. The
    cache rolls (sink frames + a window), so an episode of any length runs in constant memory and time per step.

    ## Action Space
    ``Box(low=[0, 0, 0, 0, -1, -1], high=1, shape=(6,), float32)`` = ``[W, A, S, D, yaw, pitch]``, the same as the
    real game ``ViZDoomWASD-v0`` (see :mod:`lingbot_env.actions`): a key is pressed when > 0.5 (W forward, S back,
    A strafe left, D strafe right); ``yaw`` > 0 turns right and ``pitch`` > 0 looks up, as a fraction of the model's
    turn rate (2 degrees per video frame). Discrete and keys + mouse forms: :mod:`lingbot_env.wrappers`.
    A wrong shape, NaN or inf raises ``ValueError`` and changes nothing (the env stays usable). Out-of-range values
    are handled by ``action_clip``: ``"clip_warn"`` (default) clips them and emits an :class:`ActionClippedWarning`,
    ``"clip"`` clips silently, ``"error"`` raises ``ValueError``.

    ## Observation Space
    ``Box(0, 255, shape=(H, W, 3), uint8)``: the last video frame of the step, RGB, ``H x W`` = the model's
    resolution (``world.spec.height/width``). ``info["frames"]`` has all frames of the step.

    ## Starting State
    The start image, scaled to cover ``H x W`` and centre-cropped (:func:`fit_image`). The first observation is
    that image itself, not the VAE's reconstruction of it (that is ``info["reconstruction"]``). The image comes
    from ``reset(options={"image": ...})``, else the constructor's ``image``, else the start frame shipped with the
    model (``world.start_image``); with none of them ``reset`` raises ``ValueError``.

    ## Rewards
    ``reward_fn(obs, action, info) -> float`` when given (see :class:`RewardFn`, which also describes the hooks
    for stateful and learned reward heads), else 0.

    ## Episode End
    Terminated when ``termination_fn(obs, action, info)`` returns True (never by default). Truncated once
    ``max_episode_steps`` steps were taken (never by default; ``gym.make(..., max_episode_steps=n)`` adds the
    ``TimeLimit`` wrapper instead, with the same effect).

    ## Arguments
    * ``model``: ``None`` (the project's small Doom model; an error says so while it has not landed),
      ``"doom-untrained"`` (its architecture with random weights: runs offline, shows noise), a preset name, a
      model folder (the project's bundle or a full-size LingBot folder), an ``InteractiveWorld`` with
      ``batch_size=1`` (the caller keeps ownership: ``close()`` does not close it), a factory returning one
      (called with ``batch_size=1`` if it takes that argument, else with none), or
      ``"factory:package.module:function"``, which imports that module and calls the function: **this runs
      code**, as an import does (a string without the ``factory:`` prefix is never imported).
    * ``device``, ``dtype``: where and in which dtype to load the model (``"bfloat16"``, ``torch.float16``, ...;
      None = the model's default); ignored for an already built world. A device that does not exist here (e.g.
      ``"cuda"`` on a CPU-only torch) raises ``ValueError`` before anything loads.
    * ``render_mode``: ``None``, ``"rgb_array"`` (``render()`` returns the last frame) or ``"human"`` (a pygame
      window, see :mod:`lingbot_env.human`; frames are shown during ``reset``/``step``, keyboard and mouse are read
      into ``env.viewer`` so ``env.viewer.action()`` gives the player's action).
    * ``reward_fn``, ``termination_fn``: see above. ``max_episode_steps``: int > 0 or None.
    * ``action_clip``: ``"clip_warn"`` | ``"clip"`` | ``"error"``.
    * ``image``, ``prompt``: defaults for every reset (numpy uint8 [H, W, 3], PIL image or path; str). The prompt
      defaults to ``world.spec.default_prompt``.
    * ``seed``: seeds the first ``reset`` when it gets no seed of its own.
    * ``window_scale``: integer upscaling of the human window (default: fit about 1280 x 800).
    * ``timing_info``: add the wall-clock ``*_ms`` entries to ``info`` (default False: they differ between two
      otherwise identical runs, which Gymnasium's ``check_env`` reports as non-determinism).
    * ``num_threads``: torch's CPU threads. ``"auto"`` (default) lowers them to :func:`default_num_threads` (half
      the cores, at most 4) on a CPU device unless ``OMP_NUM_THREADS`` is set, because one thread per core runs
      up to 30x slower as soon as another process takes a core; an int sets them; None leaves torch's choice.
      Process-wide, as torch's setting is.
    * ``model_kwargs``: extra keyword arguments for ``load_world``; for a LingBot release root ``size`` (e.g.
      ``{"size": (720, 1280)}``), ``release_preset`` (a Fast-layout preset of another shape) and
      ``text_encoder_kwargs``.

    ## Reset
    ``reset(seed=None, options={"image": ..., "prompt": ...})`` as in Gymnasium. The class also takes the image and
    prompt positionally, ``env.reset(image, prompt)``, before the keyword-only ``seed``/``options``; giving one
    both ways is an error. Wrappers from ``gym.make`` only pass ``seed``/``options``: use ``options`` there, or
    ``env.unwrapped.reset(image, prompt)``. Options hold for that episode only.

    ## Seeding
    ``reset(seed=s)`` seeds ``np_random``, which draws the world's noise seed for the episode: the same seed and
    the same actions give the same frames (bit for bit on the same device and dtype). Resets without a seed keep
    drawing from ``np_random``, so episodes differ.

    ## Info
    At ``reset``: ``frames`` uint8 [1, H, W, 3] (the start image), ``reconstruction`` uint8 [H, W, 3] (the VAE's
    decoding of it), ``prompt``, ``seed`` (the world's noise seed), ``step`` = 0, ``pose``, ``yaw_pitch``,
    ``reset_ms`` (with ``timing_info``).
    At ``step``: ``frames`` uint8 [F, H, W, 3] (F = ``4 * block_frames``, 4 fewer on the first step of LingBot
    Fast's layout, whose first latent frame is the start image; ``obs`` is ``frames[-1]``), ``step``
    (steps since reset), ``action`` float32 [6] as applied, ``action_clipped`` bool, ``pose`` float32 [4, 4]
    camera-to-world of the last frame and ``poses`` [F, 4, 4] of every frame (:class:`PoseTracker`), ``yaw_pitch``
    float32 [2] degrees, and with ``timing_info``: ``step_ms`` (the whole ``step``), ``generate_ms`` (DiT:
    denoising + cache pass), ``decode_ms`` (streaming decoder), all in milliseconds.

    ## Corrupt weights
    Every ``reset`` and ``step`` checks the latents and the decoded frames once (a sum: well under 1% of a step):
    NaN or inf raises :class:`~world_model.world.NonFiniteError` naming the step, never a black frame.

    ## Playing with Gymnasium's tools
    ``get_keys_to_action()`` maps W/A/S/D, the arrow keys and I/J/K/L (look without the mouse) onto the action, so
    ``gymnasium.utils.play.play(gym.make("LingBotWorld-v0", model=..., render_mode="rgb_array"))`` works; the
    scalar 0 it sends while no key is held is the no-op. ``metadata["render_fps"]`` is the step rate (an int: one
    ``render()`` frame per step), ``metadata["video_fps"]`` the model's frame rate (``info["frames"]``).
    ``RecordVideo`` and ``ResizeObservation`` need ``pip install -e ".[video]"`` (moviepy, OpenCV).

    ## Closing
    ``close()`` drops the KV caches and decoder state and the env's reference to the model, then empties the
    CUDA cache, so the GPU memory is freed once nothing else holds the model. Idempotent.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 4, "video_fps": 16.0}

    def __init__(
        self,
        model: ModelArg = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        render_mode: str | None = None,
        reward_fn: RewardFn | Callable[..., float] | None = None,
        termination_fn: TerminationFn | None = None,
        max_episode_steps: int | None = None,
        action_clip: str = "clip_warn",
        image: ImageArg | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        window_scale: int | None = None,
        timing_info: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        num_threads: int | str | None = "auto",
    ) -> None:
        check_env_args(
            self.metadata["render_modes"], render_mode, action_clip, max_episode_steps, reward_fn, termination_fn
        )
        # Inputs are checked before the (slow) model load; the image is fitted once the model's size is known.
        raw_image = None if image is None else load_image(image)
        prompt = None if prompt is None else check_prompt(prompt)
        if num_threads != "auto":
            apply_num_threads(num_threads)  # checks it before the load
        self.world, self._owns_world = resolve_world(
            model, device=device, dtype=dtype, batch_size=1, seed=seed or 0, model_kwargs=model_kwargs
        )
        self.num_threads = apply_num_threads(num_threads, self.world.device)  # torch's CPU threads now in force
        spec = self.world.spec
        self.height, self.width = spec.height, spec.width
        self.metadata = {**self.metadata, **render_rates(spec)}
        self.render_mode = render_mode
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.action_clip = action_clip
        self.action_spec = action_spec_for(self.world)
        self.action_space = self.action_spec.action_space()
        self.observation_space = spaces.Box(0, 255, shape=(self.height, self.width, 3), dtype=np.uint8)
        self._default_image = None if raw_image is None else fit_image(raw_image, self.height, self.width)
        self._default_prompt = spec.default_prompt if prompt is None else prompt
        self._initial_seed = seed
        self._seeded_once = False
        self.window_scale = window_scale
        self.timing_info = timing_info
        self.viewer: HumanRenderer | None = None
        self._poses = PoseTracker.for_world(self.world)
        self._started = False
        self._step = 0
        self._last_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ inputs
    def _start_image(self, image: ImageArg | None) -> np.ndarray:
        if image is not None:
            return prepare_image(image, self.height, self.width)
        if self._default_image is not None:
            return self._default_image
        shipped = getattr(self._require_world(), "start_image", None)
        if shipped is None:
            raise ValueError(
                "no start image: this model ships none (world.start_image is None); pass one with "
                "reset(options={'image': ...}), reset(image) or LingBotWorldEnv(image=...)"
            )
        return prepare_image(shipped, self.height, self.width, what="world.start_image")

    def _require_world(self) -> InteractiveWorld:
        if self.world is None:
            raise RuntimeError("this LingBotWorldEnv is closed; make a new one")
        return self.world

    # ------------------------------------------------------------------ gym API
    def reset(
        self,
        image: ImageArg | None = None,
        prompt: str | None = None,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: ``reset(image=None, prompt=None, *, seed=None, options=None) -> (obs, info)``.

        ``options``: ``{"image": ..., "prompt": ...}`` (either may be left out). Everything is validated before any
        state changes, so a bad image or prompt raises and leaves the env as it was.
        """
        world = self._require_world()
        t0 = time.perf_counter()
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
        options = dict(options or {})
        unknown = set(options) - {"image", "prompt"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; supported: ['image', 'prompt']")
        for key, positional in (("image", image), ("prompt", prompt)):
            if positional is not None and options.get(key) is not None:
                raise ValueError(f"{key} given both positionally and in options; give it once")
        image = image if image is not None else options.get("image")
        prompt = prompt if prompt is not None else options.get("prompt")
        obs = self._start_image(image)
        prompt = self._default_prompt if prompt is None else check_prompt(prompt)

        if seed is None and not self._seeded_once:
            seed = self._initial_seed
        super().reset(seed=seed)
        self._seeded_once = True
        world_seed = int(self.np_random.integers(0, 2**31 - 1))
        self._started = False  # stays False if the world fails below, so step() refuses clearly
        from world_model.world import images_to_tensor

        first = world.reset(images_to_tensor(obs[None]), [prompt], seeds=[world_seed])
        self._started = True
        self._step = 0
        self._poses.reset()
        self._last_obs = obs
        info = {
            "frames": obs[None].copy(),
            "reconstruction": first[0, 0].numpy(),
            "prompt": prompt,
            "seed": world_seed,
            "step": 0,
            "pose": self._poses.pose()[0],
            "yaw_pitch": self._poses.yaw_pitch()[0],
        }
        if self.timing_info:
            info["reset_ms"] = (time.perf_counter() - t0) * 1e3
        for fn in (self.reward_fn, self.termination_fn):
            call_reset_hook(fn, obs, info)
        if self.render_mode == "human":
            self._show(info["frames"], None)
        return obs.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Hold ``action`` [6] for one chunk -> ``(obs [H, W, 3] uint8, reward, terminated, truncated, info)``."""
        world = self._require_world()
        if not self._started:
            raise RuntimeError("LingBotWorldEnv: call reset() before step() (there is no world to step yet)")
        t0 = time.perf_counter()
        act, clipped = check_actions(action, None, self.action_clip)
        frames, timings = world.step(torch.from_numpy(act[None]))
        frames = frames[0].numpy()
        poses = self._poses.advance(act[None], frames=len(frames))[0]  # LingBot Fast's first chunk has fewer frames
        self._step += 1
        obs = frames[-1]
        info: dict[str, Any] = {
            "frames": frames,
            "step": self._step,
            "action": act,
            "action_clipped": bool(clipped),
            "pose": poses[-1],
            "poses": poses,
            "yaw_pitch": self._poses.yaw_pitch()[0],
        }
        if self.timing_info:
            info["generate_ms"], info["decode_ms"] = timings["generate_ms"], timings["decode_ms"]
        reward = 0.0 if self.reward_fn is None else float(self.reward_fn(obs, act, info))
        terminated = False if self.termination_fn is None else bool(self.termination_fn(obs, act, info))
        truncated = self.max_episode_steps is not None and self._step >= self.max_episode_steps
        self._last_obs = obs
        step_ms = (time.perf_counter() - t0) * 1e3
        if self.timing_info:
            info["step_ms"] = step_ms
        if self.render_mode == "human":
            self._show(frames, step_ms)
        return obs.copy(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the last frame ``uint8 [H, W, 3]`` (None before the first reset). ``human``: redraw the
        window (frames are drawn during ``step`` anyway) and return None."""
        if self.render_mode == "rgb_array":
            return None if self._last_obs is None else self._last_obs.copy()
        if self.render_mode == "human" and self._last_obs is not None:
            self._show(self._last_obs[None], None)
        return None

    def _show(self, frames: np.ndarray, step_ms: float | None) -> None:
        if self.viewer is None:
            from lingbot_env.human import HumanRenderer

            self.viewer = HumanRenderer(
                self.height, self.width, scale=self.window_scale, fps=self.metadata["video_fps"], title="LingBot-World"
            )
        self.viewer.show(frames, step_ms=step_ms)

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        if self.world is not None and self._owns_world:
            self.world.close()
        self.world = None  # the last reference to an owned model: its weights go with it
        self._started = False
        release_cuda_memory()

    @property
    def step_count(self) -> int:
        """Steps taken since the last reset."""
        return self._step

    def get_keys_to_action(self) -> dict[tuple[int, ...], np.ndarray]:
        """For ``gymnasium.utils.play.play``: every combination of W/A/S/D (move), the arrow keys and I/J/K/L
        (yaw left/right, pitch up/down) -> its action ``float32 [6]``, as in the CLI's window
        (:class:`~lingbot_env.human.InputState`; pygame key codes)."""
        return keys_to_action()
