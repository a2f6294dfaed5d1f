"""``LingBotWorld-v0`` as a true batched :class:`gymnasium.vector.VectorEnv`: N worlds, one model call per step.

``gym.make_vec("LingBotWorld-v0", num_envs=N, vectorization_mode="vector_entry_point", ...)`` returns
:class:`LingBotWorldVectorEnv`. All N worlds are rows of one :class:`~world_model.world.InteractiveWorld`
(``batch_size=N``): their KV caches, denoising passes and decoder states are batched, and a row that starts a
new episode is restarted alone (``world.reset(..., rows=[i])``) while the others go on.

Restarting single rows needs the stream layout that writes the start image alone (``first_block_frames=1``, the
project's students). With LingBot Fast's layout only whole-batch restarts work: a step that would restart some envs
while others go on raises a clear ``ValueError`` before changing anything.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lingbot_env.actions import action_spec_for, check_actions
from lingbot_env.images import ImageArg, check_prompt, fit_image, load_image, prepare_image
from lingbot_env.pose import PoseTracker
from lingbot_env.resolve import ModelArg, apply_num_threads, release_cuda_memory, resolve_world
from lingbot_env.rewards import (
    RewardFn,
    TerminationFn,
    call_reset_hook,
    learned_explore_for,
    reward_source,
    termination_source,
)
from lingbot_env.world_env import check_env_args, render_rates

if TYPE_CHECKING:
    from world_model.world import InteractiveWorld


class LingBotWorldVectorEnv(VectorEnv):
    """``num_envs`` generated worlds stepped together (see :class:`~lingbot_env.world_env.LingBotWorldEnv` for the
    world, the action and the observation of one env).

    ## Spaces
    ``single_action_space`` = the shared ``Box([0, 0, 0, 0, -1, -1], 1, (6,), float32)``, ``action_space`` its
    ``[N, 6]`` batch; ``single_observation_space`` = ``Box(0, 255, (H, W, 3), uint8)``, ``observation_space``
    ``[N, H, W, 3]``.

    ## Autoreset (``metadata["autoreset_mode"] = AutoresetMode.NEXT_STEP``, Gymnasium 1.x's default)
    An env whose step returned ``terminated`` or ``truncated`` is reset by the *next* ``step``: that step ignores
    its action and returns its new start image as the observation, reward 0 and ``terminated = truncated =
    False``; the other envs step as usual in the same batched call. (Its row is stepped with the others, then
    restarted, since one model call serves all rows.) ``reset(options={"reset_mask": mask})`` resets only the
    envs where ``mask`` [N] bool is True, right away; the others keep their state and last observation.

    ## Seeding
    Every env has its own ``np_random``: ``reset(seed=s)`` seeds env i with ``s + i`` (a list seeds each env;
    None entries leave that env's generator as it is), so env i behaves exactly like a single
    ``LingBotWorldEnv`` reset with seed ``s + i`` and then, at each autoreset, without a seed.

    ## Arguments
    As :class:`~lingbot_env.world_env.LingBotWorldEnv`, plus ``num_envs``; ``model`` is loaded with
    ``batch_size=num_envs`` (a built world must have that batch size; a factory with a ``batch_size`` parameter
    gets it). ``image``/``prompt`` (and the reset options of the same names) are one value for all envs or a list
    of ``num_envs`` values. ``render_mode``: None or ``"rgb_array"`` (``render()`` returns a tuple of the N last
    frames).

    ## Info (arrays with a leading env dimension; ``_key`` bool [N] masks mark the envs that have ``key``)
    ``frames`` uint8 [N, F, H, W, 3] (an env that was just reset holds its start image F times), ``step`` int [N],
    ``action`` float32 [N, 6] as applied, ``action_clipped`` bool [N], ``pose`` float32 [N, 4, 4], ``poses``
    float32 [N, F, 4, 4], ``yaw_pitch`` float32 [N, 2], with ``timing_info`` ``step_ms`` / ``generate_ms`` /
    ``decode_ms`` float [N] (the batched call's, the same for every env); only for envs (re)started in this call:
    ``seed`` (the world's noise seed) and ``prompt``. ``reward_fn``/``termination_fn`` get one env's view
    (``info[k][i]``), or all envs at once through their ``batch`` method (see
    :class:`~lingbot_env.world_env.RewardFn`).
    """

    metadata: dict[str, Any] = {
        "render_modes": ["rgb_array"],
        "render_fps": 4,
        "video_fps": 16.0,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        model: ModelArg = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        render_mode: str | None = None,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        max_episode_steps: int | None = None,
        action_clip: str = "clip_warn",
        image: ImageArg | Sequence[ImageArg] | None = None,
        prompt: str | Sequence[str] | None = None,
        seed: int | None = None,
        timing_info: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        num_threads: int | str | None = "auto",
    ) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        check_env_args(
            self.metadata["render_modes"], render_mode, action_clip, max_episode_steps, reward_fn, termination_fn
        )
        self.num_envs = n = int(num_envs)
        # Inputs are checked before the (slow) model load; images are fitted once the model's size is known.
        raw_images = self._load_images(image, "image")
        prompts = self._per_env_prompts(prompt, "prompt")
        if num_threads != "auto":
            apply_num_threads(num_threads)  # checks it before the load
        self.world: InteractiveWorld | None
        self.world, self._owns_world = resolve_world(
            model, device=device, dtype=dtype, batch_size=n, seed=seed or 0, model_kwargs=model_kwargs
        )
        self.num_threads = apply_num_threads(num_threads, self.world.device)  # torch's CPU threads now in force
        spec = self.world.spec
        self.height, self.width, self.frames_per_step = spec.height, spec.width, spec.frames_per_step
        self.metadata = {**self.metadata, **render_rates(spec)}
        self.render_mode = render_mode
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.action_clip = action_clip
        self.timing_info = timing_info
        self.action_spec = action_spec_for(self.world)
        self.single_action_space = self.action_spec.action_space()
        self.action_space = batch_space(self.single_action_space, n)
        self.single_observation_space = spaces.Box(0, 255, shape=(self.height, self.width, 3), dtype=np.uint8)
        self.observation_space = batch_space(self.single_observation_space, n)

        self._default_images = self._fit_images(raw_images)
        self._default_prompts = [spec.default_prompt if p is None else p for p in prompts]
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._initial_seed = seed
        self._seeded_once = False
        self._poses = PoseTracker.for_world(self.world)
        self._learned = learned_explore_for(self.world, n)  # the bundle's step heads, if it has them
        self._steps = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._last_obs = np.zeros((n, self.height, self.width, 3), dtype=np.uint8)
        self._started = False

    # ------------------------------------------------------------------ inputs
    def _per_env(self, value: Any, what: str, is_single: Any) -> list[Any]:
        """One value for every env, or a list/tuple (for images also a [N, H, W, 3] array) of one per env."""
        if value is None or is_single(value):
            return [value] * self.num_envs
        if isinstance(value, np.ndarray) and value.ndim == 4:
            value = list(value)
        if not isinstance(value, (list, tuple)):
            return [value] * self.num_envs  # the per-env check below says what is wrong with it
        if len(value) != self.num_envs:
            raise ValueError(f"{what}: got {len(value)} values for {self.num_envs} envs; give one, or one per env")
        return list(value)

    def _load_images(self, image: Any, what: str) -> list[np.ndarray | None]:
        """Per-env ``uint8 [h, w, 3]`` images (or None); one image given for all envs is read once."""
        loaded: dict[int, np.ndarray] = {}
        out: list[np.ndarray | None] = []
        for i, item in enumerate(self._per_env(image, what, _is_single_image)):
            if item is not None and id(item) not in loaded:
                loaded[id(item)] = load_image(item, what=f"{what} of env {i}")
            out.append(None if item is None else loaded[id(item)])
        return out

    def _fit_images(self, images: list[np.ndarray | None]) -> list[np.ndarray | None]:
        fitted: dict[int, np.ndarray] = {}
        for img in images:
            if img is not None and id(img) not in fitted:
                fitted[id(img)] = fit_image(img, self.height, self.width)
        return [None if img is None else fitted[id(img)] for img in images]

    def _per_env_images(self, image: Any, what: str) -> list[np.ndarray | None]:
        return self._fit_images(self._load_images(image, what))

    def _per_env_prompts(self, prompt: Any, what: str) -> list[str | None]:
        items = self._per_env(prompt, what, lambda p: isinstance(p, str))
        return [None if p is None else check_prompt(p, f"{what} of env {i}") for i, p in enumerate(items)]

    def _start_images(self, rows: Sequence[int], images: list[np.ndarray | None]) -> np.ndarray:
        out = np.empty((len(rows), self.height, self.width, 3), dtype=np.uint8)
        shipped = None
        for j, r in enumerate(rows):
            img = images[r] if images[r] is not None else self._default_images[r]
            if img is None:
                if shipped is None:
                    raw = getattr(self.world, "start_image", None)
                    if raw is None:
                        raise ValueError(
                            "no start image: this model ships none (world.start_image is None); pass one with "
                            "reset(options={'image': ...}) or LingBotWorldVectorEnv(image=...)"
                        )
                    shipped = prepare_image(raw, self.height, self.width, what="world.start_image")
                img = shipped
            out[j] = img
        return out

    def _require_world(self) -> InteractiveWorld:
        if self.world is None:
            raise RuntimeError("this LingBotWorldVectorEnv is closed; make a new one")
        return self.world

    # ------------------------------------------------------------------ reset
    def _seed_rows(self, seed: int | Sequence[int | None] | None, rows: Sequence[int]) -> None:
        if seed is None and not self._seeded_once:
            seed = self._initial_seed
        if seed is None:
            seeds: list[int | None] = [None] * len(rows)
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + r for r in rows]
        else:
            seeds = list(seed)
            if len(seeds) == self.num_envs and len(rows) != self.num_envs:
                seeds = [seeds[r] for r in rows]
            if len(seeds) != len(rows):
                raise ValueError(f"got {len(seeds)} seeds for {len(rows)} envs to reset")
        for r, s in zip(rows, seeds):
            if s is not None or self._rngs[r] is None:
                self._rngs[r], _ = seeding.np_random(None if s is None else int(s))
        self._seeded_once = True

    def _check_restartable(self, rows: Sequence[int]) -> None:
        """Refuse, before anything changes, to restart some rows of a world that can only restart all of them."""
        first = self._require_world().spec.stream.first_block_frames
        if first != 1 and 0 < len(rows) < self.num_envs:
            raise ValueError(
                f"envs {list(rows)} must restart while the others go on, but this model's stream layout "
                f"(first_block_frames={first}, LingBot Fast's) cannot restart single worlds: call reset() to restart "
                "all envs, or let episodes end together (one max_episode_steps, no termination_fn)"
            )

    def _restart(
        self, rows: list[int], images: list[np.ndarray | None], prompts: list[str | None]
    ) -> tuple[np.ndarray, list[int], list[str]]:
        """Restart the world rows ``rows``: returns their start images ``[n, H, W, 3]``, noise seeds, prompts."""
        world = self._require_world()
        obs = self._start_images(rows, images)
        texts = [prompts[r] if prompts[r] is not None else self._default_prompts[r] for r in rows]
        seeds = [int(self._rngs[r].integers(0, 2**31 - 1)) for r in rows]  # type: ignore[union-attr]
        all_rows = len(rows) == self.num_envs
        from world_model.world import images_to_tensor

        world.reset(images_to_tensor(obs), texts, seeds=seeds, rows=None if all_rows else rows)
        self._poses.reset(rows)
        if self._learned is not None:
            self._learned.reset(rows)
        self._steps[rows] = 0
        self._autoreset[rows] = False
        self._last_obs[rows] = obs
        return obs, seeds, texts

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs (or those in ``options["reset_mask"]``) -> ``(obs [N, H, W, 3] uint8, info)``.

        ``options``: ``image`` / ``prompt`` (one for all or one per env) and ``reset_mask`` (bool [N]). Inputs are
        validated before anything changes.
        """
        self._require_world()
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
        options = dict(options or {})
        unknown = set(options) - {"image", "prompt", "reset_mask"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; supported: ['image', 'prompt', 'reset_mask']")
        mask = options.get("reset_mask")
        if mask is None:
            rows = list(range(self.num_envs))
        else:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(
                    f"reset_mask must be a bool array of shape ({self.num_envs},), got {mask.dtype} {mask.shape}"
                )
            if not mask.any():
                raise ValueError("reset_mask selects no env; leave it out to reset all")
            rows = np.flatnonzero(mask).tolist()
            if not self._started and len(rows) != self.num_envs:
                raise RuntimeError("reset all envs once (no reset_mask) before resetting some of them")
            self._check_restartable(rows)
        images = self._per_env_images(options.get("image"), "image")
        prompts = self._per_env_prompts(options.get("prompt"), "prompt")
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
        self._seed_rows(seed, rows)
        t0 = time.perf_counter()
        self._started = False
        _, seeds, texts = self._restart(rows, images, prompts)
        self._started = True
        info: dict[str, Any] = {}
        _put(info, "frames", self._last_obs[:, None].copy(), rows)
        _put(info, "seed", _scatter(self.num_envs, rows, seeds, np.int64), rows)
        _put(info, "prompt", _scatter(self.num_envs, rows, texts, object), rows)
        _put(info, "step", self._steps.copy(), rows)
        _put(info, "pose", self._poses.pose(), rows)
        _put(info, "yaw_pitch", self._poses.yaw_pitch(), rows)
        if self.timing_info:
            _put(info, "reset_ms", np.full(self.num_envs, (time.perf_counter() - t0) * 1e3), rows)
        for fn in (self.reward_fn, self.termination_fn):
            if fn is not None and callable(getattr(fn, "reset", None)):
                for r in rows:
                    call_reset_hook(fn, self._last_obs[r], {k: v[r] for k, v in info.items() if not k.startswith("_")})
        return self._last_obs.copy(), info

    # ------------------------------------------------------------------ step
    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """``actions`` [N, 6] -> ``(obs uint8 [N, H, W, 3], rewards [N], terminated [N], truncated [N], info)``."""
        world = self._require_world()
        if not self._started:
            raise RuntimeError("LingBotWorldVectorEnv: call reset() before step()")
        t0 = time.perf_counter()
        n = self.num_envs
        act, clipped = check_actions(actions, n, self.action_clip)
        restart = np.flatnonzero(self._autoreset).tolist()
        going = np.flatnonzero(~self._autoreset).tolist()
        self._check_restartable(restart)
        timings = {"generate_ms": 0.0, "decode_ms": 0.0}
        generated = heads = None
        if going:
            stepped = act.copy()
            stepped[restart] = 0.0  # those rows' chunk is thrown away
            out, timings = world.step(torch.from_numpy(stepped))
            generated = out.numpy()
            heads = world.read_heads(stepped) if self._learned is not None else None
        # F is frames_per_step, except on LingBot Fast's first chunk (its frame 0 is the start image, shown already).
        f = self.frames_per_step if generated is None else generated.shape[1]
        if not restart:  # every env stepped (the usual case): the batch's frames as they came, no gather and copy
            frames = generated
            poses = self._poses.advance(act, going, frames=f)
            self._steps += 1
            self._last_obs[:] = frames[:, -1]
        else:
            frames = np.empty((n, f, self.height, self.width, 3), dtype=np.uint8)
            poses = np.repeat(self._poses.pose()[:, None], f, axis=1)
            if going:
                frames[going] = generated[going]
                poses[going] = self._poses.advance(act[going], going, frames=f)
                self._steps[going] += 1
                self._last_obs[going] = frames[going, -1]
        seeds: list[int] = []
        texts: list[str] = []
        if restart:
            none = [None] * n
            obs_new, seeds, texts = self._restart(restart, none, none)
            frames[restart] = obs_new[:, None]
            poses[restart] = self._poses.pose(restart)[:, None]
        info: dict[str, Any] = {}
        _put(info, "frames", frames)
        _put(info, "step", self._steps.copy())
        _put(info, "action", act)
        _put(info, "action_clipped", clipped)
        _put(info, "pose", poses[:, -1].copy())
        _put(info, "poses", poses)
        _put(info, "yaw_pitch", self._poses.yaw_pitch())
        if self.timing_info:
            for key in ("generate_ms", "decode_ms"):
                _put(info, key, np.full(n, timings[key]))
        if restart:
            _put(info, "seed", _scatter(n, restart, seeds, np.int64), restart)
            _put(info, "prompt", _scatter(n, restart, texts, object), restart)

        obs = self._last_obs.copy()
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        _put(info, "reward_source", np.full(n, reward_source(self.reward_fn, self._learned), dtype=object))
        ends_by = termination_source(self.termination_fn, self.world)
        _put(info, "termination_source", np.full(n, ends_by, dtype=object))
        if heads is not None:
            _put(info, "motion", heads[0].numpy())
            _put(info, "end_logit", heads[1].numpy())
        if going:
            if self.reward_fn is None and heads is not None:
                rewards[going] = self._learned.step(heads[0].numpy()[going], act[going], going)
            else:
                rewards[going] = self._evaluate(self.reward_fn, obs, act, info, going, float)
            if ends_by == "heads":
                terminated[going] = heads[1].numpy()[going] > 0
            elif ends_by == "termination_fn":
                terminated[going] = self._evaluate(self.termination_fn, obs, act, info, going, bool)
            if self.max_episode_steps is not None:
                truncated[going] = self._steps[going] >= self.max_episode_steps
        self._autoreset = terminated | truncated
        if self.timing_info:
            _put(info, "step_ms", np.full(n, (time.perf_counter() - t0) * 1e3))
        return obs, rewards, terminated, truncated, info

    def _evaluate(
        self, fn: Any, obs: np.ndarray, act: np.ndarray, info: dict[str, Any], rows: list[int], kind: type
    ) -> np.ndarray:
        """``fn`` on the rows that stepped: its ``batch`` method on all of them at once if it has one, else per env."""
        if fn is None:
            return np.zeros(len(rows), dtype=kind)
        batch = getattr(fn, "batch", None)
        if callable(batch):
            sub = {k: v[rows] for k, v in info.items() if not k.startswith("_") and k not in ("seed", "prompt")}
            values = np.asarray(batch(obs[rows], act[rows], sub))
            if values.shape != (len(rows),):
                raise ValueError(f"{type(fn).__name__}.batch returned shape {values.shape}, expected ({len(rows)},)")
            return values.astype(kind)
        keys = [k for k in info if not k.startswith("_") and k not in ("seed", "prompt")]
        return np.array([kind(fn(obs[r], act[r], {k: info[k][r] for k in keys})) for r in rows], dtype=kind)

    # ------------------------------------------------------------------ rest
    def render(self) -> tuple[np.ndarray, ...] | None:
        """``rgb_array``: the last frame of every env, a tuple of N ``uint8 [H, W, 3]``."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(frame.copy() for frame in self._last_obs)

    def close_extras(self, **kwargs: Any) -> None:
        if self.world is not None and self._owns_world:
            self.world.close()
        self.world = None
        self._started = False
        release_cuda_memory()


def _is_single_image(image: Any) -> bool:
    if isinstance(image, np.ndarray):
        return image.ndim != 4
    return isinstance(image, str) or hasattr(image, "__fspath__") or type(image).__module__.startswith("PIL.")


def _scatter(n: int, rows: Sequence[int], values: Sequence[Any], dtype: Any) -> np.ndarray:
    out = np.zeros(n, dtype=dtype) if dtype is not object else np.full(n, None, dtype=object)
    for r, v in zip(rows, values):
        out[r] = v
    return out


def _put(info: dict[str, Any], key: str, value: np.ndarray, rows: Sequence[int] | None = None) -> None:
    """Add a batched info entry and its ``_key`` mask (True for ``rows``, default all envs)."""
    info[key] = value
    mask = np.zeros(len(value), dtype=bool)
    mask[slice(None) if rows is None else list(rows)] = True
    info[f"_{key}"] = mask
