"""The real game as a Gymnasium env with the same action/observation interface as the generated world."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lingbot_env.actions import action_to_controls
from lingbot_env.doom.game import DoomConfig, create_game, read_pose
from lingbot_env.doom.labels import caption, visible_objects
from lingbot_env.doom.wad import check_map, spawn_points, wad_name
from lingbot_env.rewards import ExploreCells


class ViZDoomWASDEnv(gym.Env):
    """ViZDoom (Freedoom) driven by the shared WASD + camera action (``ViZDoomWASD-v0``).

    One step is one latent frame of the world model: the action is held for
    ``action_spec.frames_per_step`` (4) video frames of ``tics_per_frame`` (2) game tics each
    (17.5 fps by default).

    ## Action space
    ``Box(low=[0, 0, 0, 0, -1, -1], high=1, shape=(6,), float32)`` = ``[W, A, S, D, yaw, pitch]``
    (see :mod:`lingbot_env.actions`): keys pressed when > 0.5; ``yaw`` > 0 turns right and ``pitch`` > 0
    looks up, each as a fraction of ``action_spec.max_*_deg_per_frame`` (2 degrees) per video frame,
    fed to ViZDoom's continuous TURN_LEFT_RIGHT_DELTA / LOOK_UP_DOWN_DELTA buttons. Out-of-range values
    are clipped; a wrong shape, NaN or inf raises ``ValueError``.

    ## Observation space
    ``Box(0, 255, (H, W, 3), uint8)``: the last of the step's video frames (RGB), ``(W, H)`` =
    ``frame_size`` or ``resolution``. ``info["frames"]`` holds all of them.

    ## Rewards
    ``reward="explore"`` (default): +1 per newly visited ``explore_cell`` x ``explore_cell`` map cell;
    ``"game"``: kills +1, items +0.1, secrets +1, level exit +10, death -10; ``"none"``: 0.

    ## Episode end
    Terminated when the player dies or exits the level; truncated after ``max_steps`` steps (0 = never).
    If the game ends mid-step the remaining frames repeat the last one (``info["frames_valid"]`` < 4).

    ## Info
    ``frames`` uint8 [4, H, W, 3] (at reset: [1, H, W, 3], the start frame), ``poses`` float32 [4, 5]
    and ``pose`` float32 [5] = (x, y, z, yaw, pitch) of the last frame (Doom map units; yaw in degrees
    counter-clockwise from +x, so turning right decreases it; pitch in degrees, > 0 = up), ``map``,
    ``wad``, ``health``, ``dead`` (the player died), ``step``, ``tic``, ``frames_valid``; with ``labels=True``:
    ``visible_objects`` (list of dicts, see :class:`~lingbot_env.doom.labels.VisibleObject`) and
    ``caption``; with ``depth=True``: ``depth`` uint8 [H, W] of the last frame.

    ## Arguments
    ``ViZDoomWASDEnv(config: DoomConfig | None = None, render_mode=None, **overrides)``: every
    :class:`~lingbot_env.doom.game.DoomConfig` field is accepted as a keyword (``wad``, ``map``,
    ``resolution``, ``frame_size``, ``tics_per_frame``, ``hud``, ``weapon``, ``monsters``, ``skill``,
    ``god_mode``, ``max_steps``, ``random_start``, ``auto_use``, ``labels``, ``depth``, ``reward``,
    ``seed``, ...). ``reset(options={"map": "MAP05"})`` switches maps between episodes.
    ``render_mode="rgb_array"`` makes ``render()`` return the last observation.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 17.5}

    def __init__(self, config: DoomConfig | None = None, render_mode: str | None = None, **overrides: Any):
        config = DoomConfig(**overrides) if config is None else config.replace(**overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": config.video_fps}
        w, h = config.output_size
        self.observation_space = spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        self.action_space = config.action_spec.action_space()
        self._game: Any = None  # started at the first reset, so a constructed env stays cheap/picklable
        self._map = config.map
        self._wad = wad_name(config.wad_path)
        self._seeded_once = False
        self._last_obs: np.ndarray | None = None
        self._pose = np.zeros(5, np.float32)
        self._step = 0
        self._frame_count = 0
        self._last_move, self._since_use = 0.0, 8
        self._cells = ExploreCells(config.explore_cell)

    # ------------------------------------------------------------------ frames and state
    def _convert(self, buf: np.ndarray, nearest: bool = False) -> np.ndarray:
        if self.config.frame_size is None or self.config.frame_size == self.config.resolution:
            return np.ascontiguousarray(buf)
        from PIL import Image

        resample = Image.NEAREST if nearest else Image.BILINEAR
        return np.asarray(Image.fromarray(buf).resize(self.config.frame_size, resample))

    def _read(self) -> tuple[np.ndarray, np.ndarray, Any]:
        state = self._game.get_state()
        return self._convert(state.screen_buffer), read_pose(state.game_variables), state

    def _visit(self, pose: np.ndarray) -> int:
        return self._cells.visit(float(pose[0]), float(pose[1]))

    def _info(self, frames: np.ndarray, poses: np.ndarray, state: Any, frames_valid: int) -> dict[str, Any]:
        info: dict[str, Any] = {
            "frames": frames,
            "poses": poses,
            "pose": poses[-1].copy(),
            "map": self._map,
            "wad": self._wad,
            "health": float(state.game_variables[5]) if state is not None else 0.0,
            # The game's own word: a death mid-step leaves ``health`` at the last frame read, above 0.
            "dead": bool(self._game.is_player_dead()),
            "step": self._step,
            "tic": int(state.tic) if state is not None else -1,
            "frames_valid": frames_valid,
        }
        depth = None
        if self.config.depth:
            depth = self._convert(state.depth_buffer, nearest=True) if state is not None else None
            info["depth"] = depth if depth is not None else np.zeros(frames.shape[1:3], np.uint8)
        if self.config.labels:
            objs = (
                visible_objects(state.labels, poses[-1], self.config.resolution, self.config.output_size)
                if state is not None
                else []
            )
            info["visible_objects"] = [o.to_dict() for o in objs]
            info["caption"] = caption(frames[-1], objs, depth)
        return info

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and not self._seeded_once and self.config.seed is not None:
            seed = self.config.seed
        super().reset(seed=seed)
        self._seeded_once = True
        options = dict(options or {})
        unknown = set(options) - {"map"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; supported: ['map']")
        new_map = check_map(self.config.wad_path, options.get("map", self._map))
        if self._game is None:
            workdir = tempfile.mkdtemp(prefix="lingbot-vizdoom-")
            self._game = create_game(self.config.replace(map=new_map), workdir)
            # Also on garbage collection / interpreter exit: stop the engine first (it saves its ini
            # on exit), then delete its folder.
            self._cleanup = weakref.finalize(self, _shutdown, self._game, workdir)
        elif new_map != self._map:
            self._game.set_doom_map(new_map)
        self._map = new_map

        rng = self.np_random
        self._game.set_seed(int(rng.integers(0, 2**31 - 1)))
        self._game.new_episode()
        if self.config.god_mode:
            # `god` toggles; a new episode restarts the player without it, so one toggle turns it on.
            self._game.send_game_command("god")
        if self.config.random_start:
            pts = spawn_points(self.config.wad_path, self._map)
            if len(pts):
                x, y = pts[int(rng.integers(len(pts)))]
                self._game.send_game_command(f"warp {float(x):.1f} {float(y):.1f}")
        self._game.set_action([0.0] * 7)
        for _ in range(self.config.warmup_tics):
            self._game.advance_action(1, True)  # rendered one by one: see DoomConfig.warmup_tics
        if self.config.random_start:
            # Turning works only after the spawn reaction time (the warm-up), hence done here.
            turn = float(rng.uniform(-180.0, 180.0))
            self._game.set_action([0, 0, 0, 0, turn, 0, 0])
            self._game.advance_action(1, True)
        self._step = 0
        self._frame_count = 0
        self._last_move, self._since_use = 0.0, 8
        self._cells.reset()
        frame, pose, state = self._read()
        self._visit(pose)
        self._last_obs = frame
        self._pose = pose
        return frame, self._info(frame[None], pose[None], state, 1)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        ctl = action_to_controls(action, self.config.action_spec)
        tpf = self.config.tics_per_frame
        n = self.config.action_spec.frames_per_step
        keys = [float(k) for k in ctl.keys]
        # Delta buttons act per tic, so the per-frame turn is spread evenly over the frame's tics.
        yaw_tic, pitch_tic = ctl.yaw_deg / tpf, ctl.pitch_deg / tpf
        h, w = self.observation_space.shape[:2]
        frames = np.empty((n, h, w, 3), dtype=np.uint8)
        poses = np.empty((n, 5), dtype=np.float32)
        reward = 0.0
        terminated = False
        state = None
        valid = 0
        for i in range(n):
            # Like a player at a door: press USE when walking forward got blocked, at most every 8 frames
            # (a held USE would not retrigger, and spamming it floods the screen with "key needed").
            use = self.config.auto_use and keys[0] > 0 and self._last_move < 2.0 and self._since_use >= 8
            self._since_use = 0 if use else self._since_use + 1
            self._game.set_action([*keys, yaw_tic, pitch_tic, float(use)])
            self._game.advance_action(tpf, True)
            self._frame_count += 1
            if self.config.reward == "game":
                reward += float(self._game.get_last_reward())
            if self._game.is_episode_finished():
                terminated = True
                break
            frames[i], poses[i], state = self._read()
            prev = poses[i - 1] if i else self._pose
            self._last_move = float(np.hypot(poses[i, 0] - prev[0], poses[i, 1] - prev[1]))
            if self.config.reward == "explore":
                reward += self._visit(poses[i])
            valid += 1
        if valid < n:
            frames[valid:] = frames[valid - 1] if valid else self._last_obs
            poses[valid:] = poses[valid - 1] if valid else self._pose
        self._step += 1
        truncated = bool(self.config.max_steps and self._step >= self.config.max_steps and not terminated)
        self._last_obs = frames[-1]
        self._pose = poses[-1].copy()
        return frames[-1].copy(), reward, terminated, truncated, self._info(frames, poses, state, valid)

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._last_obs is None else self._last_obs.copy()
        return None

    def close(self) -> None:
        if self._game is not None:
            self._game = None
            self._cleanup()


def _shutdown(game: Any, workdir: str) -> None:
    game.close()
    shutil.rmtree(workdir, ignore_errors=True)
