"""Other forms of the shared ``[W, A, S, D, yaw, pitch]`` Box action, and an adapter for Stable-Baselines3.

* :class:`DiscreteActions`: ``Discrete(n)`` over a table of named actions (for DQN-style agents).
* :class:`KeysAndMouse`: ``Dict(keys=MultiBinary(4), mouse=Box(-1, 1, (2,)))``, the shape of a keyboard + mouse.
* :class:`SB3VecEnv`: a Gymnasium vector env (``gym.make_vec("LingBotWorld-v0", ...)``) as an SB3 ``VecEnv``,
  so PPO & co. train on the batched world.

Both action wrappers work on any env with the shared action space (``LingBotWorld-v0``, ``ViZDoomWASD-v0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from lingbot_env.actions import ACTION_DIM, make_action

#: The default discrete action set: name -> ``[W, A, S, D, yaw, pitch]`` (turns at the full rate, ``turn = 1``).
#:
#: ===  ===============  ==============================
#: idx  name             action
#: ===  ===============  ==============================
#:  0   noop             nothing
#:  1   forward          W
#:  2   back             S
#:  3   strafe_left      A
#:  4   strafe_right     D
#:  5   turn_left        yaw -turn
#:  6   turn_right       yaw +turn
#:  7   forward_left     W + yaw -turn
#:  8   forward_right    W + yaw +turn
#:  9   look_up          pitch +turn
#: 10   look_down        pitch -turn
#: ===  ===============  ==============================
DISCRETE_ACTION_NAMES: tuple[str, ...] = (
    "noop",
    "forward",
    "back",
    "strafe_left",
    "strafe_right",
    "turn_left",
    "turn_right",
    "forward_left",
    "forward_right",
    "look_up",
    "look_down",
)


def discrete_action_table(turn: float = 1.0) -> dict[str, np.ndarray]:
    """The default table (see :data:`DISCRETE_ACTION_NAMES`) with yaw/pitch magnitude ``turn`` in (0, 1]."""
    if not 0 < turn <= 1:
        raise ValueError(f"turn must be in (0, 1], got {turn}")
    return {
        "noop": make_action(),
        "forward": make_action(w=True),
        "back": make_action(s=True),
        "strafe_left": make_action(a=True),
        "strafe_right": make_action(d=True),
        "turn_left": make_action(yaw=-turn),
        "turn_right": make_action(yaw=turn),
        "forward_left": make_action(w=True, yaw=-turn),
        "forward_right": make_action(w=True, yaw=turn),
        "look_up": make_action(pitch=turn),
        "look_down": make_action(pitch=-turn),
    }


class DiscreteActions(gym.ActionWrapper):
    """``Discrete(n)`` actions mapped through a table to the Box action (default table: :data:`DISCRETE_ACTION_NAMES`).

    Args:
        env: an env with the shared ``[W, A, S, D, yaw, pitch]`` Box action space.
        actions: a custom table, name -> 6 numbers (order = index), instead of the default.
        turn: yaw/pitch magnitude of the default table's turning actions.
    """

    def __init__(self, env: gym.Env, actions: Mapping[str, Sequence[float]] | None = None, turn: float = 1.0):
        super().__init__(env)
        _check_box(env)
        table = discrete_action_table(turn) if actions is None else {k: make_action(*v) for k, v in actions.items()}
        if not table:
            raise ValueError("the action table is empty")
        self.names: tuple[str, ...] = tuple(table)
        self.table = np.stack([np.asarray(v, dtype=np.float32) for v in table.values()])  # [n, 6]
        self.action_space = spaces.Discrete(len(self.names))

    def action(self, action: Any) -> np.ndarray:
        i = int(np.asarray(action).item()) if np.ndim(action) else int(action)
        if not 0 <= i < len(self.names):
            raise ValueError(f"discrete action must be in [0, {len(self.names)}), got {action!r}")
        return self.table[i].copy()


class KeysAndMouse(gym.ActionWrapper):
    """``Dict(keys=MultiBinary(4), mouse=Box(-1, 1, (2,), float32))`` -> ``[W, A, S, D, yaw, pitch]``.

    ``keys`` are W, A, S, D (1 = held); ``mouse`` is ``(yaw, pitch)``: > 0 turns right / looks up, as a fraction
    of the full turn rate (values outside [-1, 1] are clipped). A ``(keys, mouse)`` tuple is accepted too.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        _check_box(env)
        self.action_space = spaces.Dict(
            {"keys": spaces.MultiBinary(4), "mouse": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)}
        )

    def action(self, action: Any) -> np.ndarray:
        if isinstance(action, Mapping):
            if set(action) != {"keys", "mouse"}:
                raise ValueError(f"action must have exactly the keys 'keys' and 'mouse', got {sorted(action)}")
            keys, mouse = action["keys"], action["mouse"]
        elif isinstance(action, (tuple, list)) and len(action) == 2:
            keys, mouse = action
        else:
            raise TypeError(
                f"action must be {{'keys': [4] of 0/1, 'mouse': [yaw, pitch]}}, got {type(action).__name__}"
            )
        keys, mouse = np.asarray(keys, dtype=np.float32), np.asarray(mouse, dtype=np.float32)
        if keys.shape != (4,) or mouse.shape != (2,):
            raise ValueError(f"keys must have shape (4,) and mouse (2,), got {keys.shape} and {mouse.shape}")
        if not (np.isfinite(keys).all() and np.isfinite(mouse).all()):
            raise ValueError(f"action contains NaN or inf: keys={keys.tolist()} mouse={mouse.tolist()}")
        return np.concatenate([(keys > 0.5).astype(np.float32), np.clip(mouse, -1.0, 1.0)])


def _check_box(env: gym.Env) -> None:
    space = env.action_space
    if not (isinstance(space, spaces.Box) and space.shape == (ACTION_DIM,)):
        raise TypeError(f"the env must have the shared Box action space of shape ({ACTION_DIM},), got {space}")


class SB3VecEnv(VecEnv):
    """A Gymnasium vector env with ``reset(options={"reset_mask": mask})`` support (such as
    :class:`~lingbot_env.vector_env.LingBotWorldVectorEnv`) as a Stable-Baselines3 ``VecEnv``.

    SB3 expects an env that ended to come back already reset, with its last observation in
    ``infos[i]["terminal_observation"]``; Gymnasium's next-step autoreset would instead waste the following step.
    So the envs that end are reset at once through ``reset_mask``, and ``infos[i]["TimeLimit.truncated"]`` is set
    for truncations (SB3 bootstraps their value). Infos are per-env dicts of the vector info (``frames`` left out,
    to keep rollouts light).
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, info = self.env.reset(seed=seeds)
        self.reset_infos = self._split(info)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        dones = terminated | truncated
        infos = self._split(info)
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = obs[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            obs, reset_info = self.env.reset(options={"reset_mask": dones})
            for i, extra in enumerate(self._split(reset_info)):
                if dones[i]:
                    self.reset_infos[i] = extra
        return obs, rewards.astype(np.float32), dones, infos

    def _split(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in info.items():
            if key.startswith("_") or key == "frames":
                continue
            mask = info.get(f"_{key}", np.ones(self.num_envs, dtype=bool))
            for i in np.flatnonzero(mask):
                out[i][key] = value[i]
        return out

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return [None] * self.num_envs if frames is None else list(frames)

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    # The batched env is one object: attributes are the vector env's, reported once per requested env.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any):
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
