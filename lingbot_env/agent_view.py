"""What a policy sees: the world's frames made small, gray and stacked, the same way in the dream and in the game.

A frame at the world's size (``128 x 96`` RGB for the Doom world) is more than a small CNN policy needs, and one
frame shows no motion. :class:`AgentView` says how an agent looks at the world:

    AgentView(size=(64, 48), gray=True, stack=4)   # 64 x 48 gray, the last 4 steps: obs uint8 [48, 64, 4]

and wraps any env with the image observation of ``LingBotWorld-v0`` / ``ViZDoomWASD-v0``:

* :meth:`AgentView.wrap`: one Gymnasium env (Gymnasium's ``TransformObservation`` and ``FrameStackObservation``);
* :meth:`AgentView.wrap_vector`: a Gymnasium vector env (``gym.make_vec("LingBotWorld-v0", ...)``), before
  :class:`~lingbot_env.wrappers.SB3VecEnv`; frames stacked by SB3's ``VecFrameStack`` (:meth:`AgentView.stack_sb3`);
* :meth:`AgentView.reader`: a policy's own eyes, fed the env's raw frames one step at a time (how a saved policy
  plays in any loop: ``agents.evaluate``, ``agents.side_by_side``).

Stacking follows ``VecFrameStack(channels_order="last")`` in both: channels of the ``stack`` last steps, oldest
first, zeros before the episode's first frame; so a policy trained on stacked vector envs sees the same arrays when
it is scored in a single env. Resizing is area averaging in torch (no OpenCV needed; exact block means for integer
factors), gray is ITU-R 601 luma, both on the frames the env already returns, so a step copies its frames from the
device once, as without a view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.vector import VectorObservationWrapper

_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AgentView:
    """How a policy looks at the world. Defaults: the frame as the env gives it.

    Args:
        size: ``(width, height)`` to resize each frame to (area averaging), or None for the env's size.
        gray: one luma channel instead of RGB.
        stack: how many of the last steps' frames the observation holds (channels, oldest first).
    """

    size: tuple[int, int] | None = None
    gray: bool = False
    stack: int = 1

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(s) for s in self.size))
            if len(self.size) != 2 or min(self.size) < 1:
                raise ValueError(f"AgentView size must be (width, height) >= 1, got {self.size}")
        if self.stack < 1:
            raise ValueError(f"AgentView stack must be >= 1, got {self.stack}")

    @classmethod
    def parse(cls, size: str | None = None, gray: bool = False, stack: int = 1) -> AgentView:
        """From command-line text: ``size`` as ``"64x48"`` (width x height)."""
        if not size:
            return cls(None, gray, stack)
        try:
            w, h = (int(s) for s in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--view-size must be WIDTHxHEIGHT, e.g. 64x48, got {size!r}") from None
        return cls((w, h), gray, stack)

    @property
    def is_identity(self) -> bool:
        return self.size is None and not self.gray and self.stack == 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size) if self.size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AgentView:
        """The view a saved policy recorded (None or absent: the frame as the env gives it)."""
        d = d or {}
        return cls(tuple(d["size"]) if d.get("size") else None, bool(d.get("gray", False)), int(d.get("stack", 1)))

    # -- the transform -------------------------------------------------------------------------------------
    def frame_space(self, space: spaces.Box) -> spaces.Box:
        """The space of one transformed frame (before stacking), from the env's ``Box(0, 255, (H, W, 3))``."""
        if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
            raise ValueError(f"AgentView needs uint8 image observations [H, W, C], got {space}")
        h, w, c = space.shape
        if self.size is not None:
            w, h = self.size
        return spaces.Box(0, 255, (h, w, 1 if self.gray else c), np.uint8)

    def frames(self, obs: np.ndarray) -> np.ndarray:
        """uint8 ``[..., H, W, C]`` -> uint8 ``[..., h, w, c]``: resized (area) and/or gray, as :meth:`frame_space`."""
        if self.size is None and not self.gray:
            return obs
        arr = np.ascontiguousarray(obs)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # read-only arrays: torch warns
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()  # [N, C, H, W]
        if self.gray:
            x = (x * x.new_tensor(_LUMA)[: x.shape[1], None, None]).sum(1, keepdim=True)
        if self.size is not None and (x.shape[-1], x.shape[-2]) != self.size:
            x = F.interpolate(x, size=(self.size[1], self.size[0]), mode="area")
        x = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return x.reshape(*lead, *x.shape[1:]).numpy()

    def observation_space(self, space: spaces.Box) -> spaces.Box:
        """The policy's observation space: :meth:`frame_space` with ``stack`` times the channels."""
        h, w, c = self.frame_space(space).shape
        return spaces.Box(0, 255, (h, w, c * self.stack), np.uint8)

    # -- wrappers ------------------------------------------------------------------------------------------
    def wrap(self, env: gym.Env, stack: bool = True) -> gym.Env:
        """One env seen through this view (stacked as ``VecFrameStack`` stacks; ``stack=False``: frames only)."""
        if self.size is not None or self.gray:
            env = gym.wrappers.TransformObservation(env, self.frames, self.frame_space(env.observation_space))
        if self.stack > 1 and stack:
            env = gym.wrappers.FrameStackObservation(env, self.stack, padding_type="zero")
            h, w, c = env.observation_space.shape[1:]
            env = gym.wrappers.TransformObservation(
                env, _channels_last, spaces.Box(0, 255, (h, w, c * self.stack), np.uint8)
            )
        return env

    def wrap_vector(self, env: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
        """A vector env's frames resized / gray (stack them with :meth:`stack_sb3` once it is an SB3 ``VecEnv``)."""
        return env if self.size is None and not self.gray else _VectorFrames(env, self)

    def stack_sb3(self, venv):
        """An SB3 ``VecEnv`` with this view's frame stack (``VecFrameStack``, channels last); as is for stack 1."""
        if self.stack == 1:
            return venv
        from stable_baselines3.common.vec_env import VecFrameStack

        return VecFrameStack(venv, self.stack, channels_order="last")

    def reader(self) -> ViewReader:
        """A stateful reader of one env's raw frames: ``reset()`` at each episode's start, then one call per frame."""
        return ViewReader(self)


class ViewReader:
    """Turns the raw frames of one episode, one call per step (the reset frame first), into :class:`AgentView`
    observations: the same arrays as ``VecFrameStack`` over :meth:`AgentView.wrap_vector`."""

    def __init__(self, view: AgentView) -> None:
        self.view = view
        self._stack: np.ndarray | None = None

    def reset(self) -> None:
        self._stack = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        frame = self.view.frames(obs)
        if self.view.stack == 1:
            return frame
        c = frame.shape[-1]
        if self._stack is None:
            self._stack = np.zeros((*frame.shape[:-1], c * self.view.stack), np.uint8)
        self._stack = np.roll(self._stack, -c, axis=-1)
        self._stack[..., -c:] = frame
        return self._stack.copy()


def _channels_last(stacked: np.ndarray) -> np.ndarray:
    """``[stack, H, W, C]`` -> ``[H, W, stack * C]``, oldest first (``VecFrameStack``'s layout)."""
    k, h, w, c = stacked.shape
    return np.ascontiguousarray(np.moveaxis(stacked, 0, 2).reshape(h, w, k * c))


class _VectorFrames(VectorObservationWrapper):
    """A vector env's batched frames ``[N, H, W, C]`` through :meth:`AgentView.frames`."""

    def __init__(self, env: gym.vector.VectorEnv, view: AgentView) -> None:
        super().__init__(env)
        self.view = view
        self.single_observation_space = view.frame_space(env.single_observation_space)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return self.view.frames(observations)
