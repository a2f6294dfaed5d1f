"""``LingBotWorld-v0``: the generated world (an :class:`~world_model.world.InteractiveWorld`) as a Gymnasium env.

This module holds the Gymnasium contract of the single env; what the batched env (:mod:`lingbot_env.vector_env`)
shares with it lives in its own modules: :mod:`lingbot_env.resolve` (the ``model`` argument),
:mod:`lingbot_env.images` (start images, prompts), :mod:`lingbot_env.actions` (action checking),
:mod:`lingbot_env.pose` (camera poses) and :mod:`lingbot_env.rewards` (the reward protocol).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from lingbot_env.actions import (
    ACTION_CLIP_MODES,
    action_spec_for,
    check_actions,
    keys_to_action,
)
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
from world_model.world import InteractiveWorld

if TYPE_CHECKING:
    from lingbot_env.human import HumanRenderer


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


def render_rates(spec: Any) -> dict[str, Any]:
    """``render_fps``: ``render()`` frames per second of real time, an int as Gymnasium's tools want (``play``
    paces its loop with it, ``RecordVideo`` writes one frame per step at it): the step rate, rounded, at least 1.
    ``video_fps``: the model's video frame rate (every step makes ``frames_per_step`` frames), for all-frame video
    (``info["frames"]``, the CLI's ``--record``, the human window)."""
    return {"render_fps": max(1, round(spec.fps / spec.frames_per_step)), "video_fps": float(spec.fps)}


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
    for stateful reward functions); else, when the model's bundle has step heads (:mod:`world_model.heads`), the
    learned exploration reward: +1 per newly entered map cell along the path the heads' per-step motion traces
    (:class:`~lingbot_env.rewards.LearnedExplore`); else 0. ``info["reward_source"]`` says which:
    ``"reward_fn"``, ``"heads"`` or ``"none"``.

    ## Episode End
    Terminated when ``termination_fn(obs, action, info)`` returns True; without one, when the bundle's step heads
    say the episode ended (the player died: ``info["end_logit"] > 0``) and their config lets them
    (``terminates``: set by the trainer only for an end head that finds deaths without false alarms); never
    otherwise. ``info["termination_source"]`` says which: ``"termination_fn"``, ``"heads"`` or ``"none"``.
    Truncated once ``max_episode_steps`` steps were taken (never by default;
    ``gym.make(..., max_episode_steps=n)`` adds the ``TimeLimit`` wrapper instead, with the same effect).

    ## Arguments
    * ``model``: ``None`` or ``"default"`` (the project's small Doom world, shipped in ``world_model/assets/doom``),
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
        self._learned = learned_explore_for(self.world, 1)  # the bundle's step heads, if it has them
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
        if self._learned is not None:
            self._learned.reset()
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
        heads = world.read_heads(act[None]) if self._learned is not None else None
        info["reward_source"] = reward_source(self.reward_fn, self._learned)
        info["termination_source"] = termination_source(self.termination_fn, world)
        if heads is not None:
            info["motion"], info["end_logit"] = heads[0][0].numpy(), float(heads[1][0])
        if self.reward_fn is not None:
            reward = float(self.reward_fn(obs, act, info))
        elif heads is not None:
            reward = float(self._learned.step(heads[0].numpy(), act[None])[0])
        else:
            reward = 0.0
        if self.termination_fn is not None:
            terminated = bool(self.termination_fn(obs, act, info))
        else:
            terminated = info["termination_source"] == "heads" and info["end_logit"] > 0
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
