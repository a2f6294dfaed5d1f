"""ViZDoom setup for the real-game env: the config dataclass, its validation and the ``DoomGame`` factory.

Everything here except :func:`create_game` works without importing ViZDoom, so configs are validated
cheaply and with clear errors before the engine starts.

World conventions (Doom's): x east, y north, z up, map units (a player is 56 tall, 32 wide).
``yaw`` = Doom angle in degrees, counter-clockwise from +x, in [0, 360): turning right *decreases* it.
``pitch`` in degrees, > 0 = looking up (ViZDoom's PITCH variable has the opposite sign).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

from lingbot_env.actions import DEFAULT_SPEC, ActionSpec
from lingbot_env.doom.wad import check_map, resolve_wad

# 4:3 render sizes the ViZDoom ScreenResolution enum offers (width, height).
SUPPORTED_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (160, 120),
    (200, 150),
    (256, 192),
    (320, 240),
    (400, 300),
    (512, 384),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 960),
    (1400, 1050),
    (1600, 1200),
)
POSE_FIELDS: tuple[str, ...] = ("x", "y", "z", "yaw", "pitch")
RewardMode = Literal["explore", "game", "none"]
REWARD_MODES: tuple[str, ...] = ("explore", "game", "none")


def parse_size(size: Any, what: str = "size") -> tuple[int, int]:
    """``(W, H)``, ``[W, H]`` or ``"WxH"`` -> ``(W, H)`` of positive ints; ``ValueError`` otherwise."""
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if not m:
            raise ValueError(f"{what} must look like 'WxH' (e.g. '160x120'), got {size!r}")
        w, h = int(m.group(1)), int(m.group(2))
    else:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what} must be (width, height) or 'WxH', got {size!r}") from e
    if w <= 0 or h <= 0:
        raise ValueError(f"{what} must be positive, got {w}x{h}")
    return w, h


def check_resolution(resolution: Any) -> tuple[int, int]:
    """Validate a ViZDoom render resolution; only the 4:3 sizes of ViZDoom's enum are accepted."""
    w, h = parse_size(resolution, "resolution")
    if (w, h) not in SUPPORTED_RESOLUTIONS:
        names = ", ".join(f"{a}x{b}" for a, b in SUPPORTED_RESOLUTIONS)
        raise ValueError(
            f"unsupported resolution {w}x{h}: ViZDoom renders only these 4:3 sizes: {names}. "
            "For any other output size keep a supported resolution and set frame_size=(W, H), "
            "which resizes every frame."
        )
    return w, h


@dataclass(frozen=True)
class DoomConfig:
    """Options of the real-game env (``ViZDoomWASD-v0``); every field is also a ``gym.make`` kwarg.

    Args:
        wad: ``"freedoom1"``, ``"freedoom2"`` (shipped with vizdoom) or a path to a ``.wad``.
        map: map to start on (``"MAP01"`` for Doom II-style WADs, ``"E1M1"`` for Doom I-style).
        resolution: ViZDoom render size (W, H), one of the 4:3 :data:`SUPPORTED_RESOLUTIONS`.
        frame_size: output frame size (W, H); ``None`` = the render resolution. Any other size is made
            by resizing every rendered frame (bilinear, antialiased), since ViZDoom renders only its
            enum sizes; a non-4:3 ``frame_size`` stretches the image.
        tics_per_frame: game tics (1/35 s) between recorded video frames; 2 gives 17.5 fps, close to
            LingBot's 16 fps.
        action_spec: how actions are interpreted (turn rates, frames per env step).
        hud: draw the status bar. weapon: draw the player's weapon. crosshair, messages: draw those.
        monsters: spawn monsters (``False`` = ``-nomonsters``). skill: Doom skill 1..5.
        god_mode: make the player invulnerable (monsters still act), for long exploration episodes.
        max_steps: episode length limit in env steps (truncation); 0 = no limit.
        random_start: start each episode at a random pickup/start position of the map with a random yaw
            instead of the map's player start (more varied data from short episodes).
        auto_use: press USE when walking forward is blocked (at most every 8 frames), so doors open and
            switches flip when walked into, as a player would (the shared action has no USE key).
        labels: compute ``info["visible_objects"]`` and ``info["caption"]`` (ViZDoom labels buffer).
        depth: return ``info["depth"]`` (uint8 [H, W], about 7 map units per step) and use it in captions.
        reward: ``"explore"`` (+1 per newly visited ``explore_cell``-sized grid cell),
            ``"game"`` (kills +1, items +0.1, secrets +1, exit +10, death -10) or ``"none"``.
        explore_cell: grid cell size in map units for the explore reward.
        seed: seed of the first ``reset()`` when none is passed.
        warmup_tics: no-op tics run (and rendered) at reset before the first frame. Doom ignores a freshly
            spawned player's movement and turning for 8 tics (its reaction time), and the engine eases
            the weapon's bob towards rest by at most 1 unit per rendered frame from wherever the last
            episode left it (a global, so not reset with the level): 18 rendered tics make the first
            frames independent of earlier episodes.
    """

    wad: str = "freedoom2"
    map: str = "MAP01"
    resolution: tuple[int, int] = (160, 120)
    frame_size: tuple[int, int] | None = None
    tics_per_frame: int = 2
    action_spec: ActionSpec = field(default_factory=lambda: DEFAULT_SPEC)
    hud: bool = False
    weapon: bool = True
    crosshair: bool = False
    messages: bool = False
    monsters: bool = True
    skill: int = 3
    god_mode: bool = False
    max_steps: int = 1000
    random_start: bool = False
    auto_use: bool = True
    labels: bool = True
    depth: bool = False
    reward: RewardMode = "explore"
    explore_cell: float = 64.0
    seed: int | None = None
    warmup_tics: int = 18

    def __post_init__(self) -> None:
        # Normalise user-friendly inputs ("160x120", dict action specs) so configs compare equal.
        object.__setattr__(self, "resolution", check_resolution(self.resolution))
        if self.frame_size is not None:
            object.__setattr__(self, "frame_size", parse_size(self.frame_size, "frame_size"))
        if isinstance(self.action_spec, dict):
            object.__setattr__(self, "action_spec", ActionSpec.from_dict(self.action_spec))
        if not isinstance(self.action_spec, ActionSpec):
            raise TypeError(f"action_spec must be an ActionSpec, got {type(self.action_spec).__name__}")
        if self.tics_per_frame < 1:
            raise ValueError(f"tics_per_frame must be >= 1, got {self.tics_per_frame}")
        if not 1 <= self.skill <= 5:
            raise ValueError(f"skill must be in 1..5, got {self.skill}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 (0 = no limit), got {self.max_steps}")
        if self.reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {self.reward!r}")
        if self.warmup_tics < 0:
            raise ValueError(f"warmup_tics must be >= 0, got {self.warmup_tics}")
        if self.explore_cell <= 0:
            raise ValueError(f"explore_cell must be > 0, got {self.explore_cell}")
        wad_path = resolve_wad(self.wad)
        object.__setattr__(self, "map", check_map(wad_path, self.map))

    @property
    def wad_path(self) -> str:
        return resolve_wad(self.wad)

    @property
    def output_size(self) -> tuple[int, int]:
        """(W, H) of the frames the env returns."""
        return self.frame_size or self.resolution

    @property
    def video_fps(self) -> float:
        return 35.0 / self.tics_per_frame

    def replace(self, **changes: Any) -> DoomConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        d["frame_size"] = list(self.frame_size) if self.frame_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DoomConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TypeError(f"unknown DoomConfig fields: {sorted(unknown)}")
        return cls(**d)


def create_game(cfg: DoomConfig, workdir: str) -> Any:
    """Build and ``init()`` a headless ``vizdoom.DoomGame`` for ``cfg`` (synchronous PLAYER mode).

    ``workdir`` is a private folder for the engine's files: ViZDoom writes ``_vizdoom.ini`` and a
    ``_vizdoom/`` folder into the current directory, which would litter the caller's tree (and let
    cvars leak between runs), so the config goes there and the engine is started from there.

    Buttons, in this order: MOVE_FORWARD, MOVE_LEFT, MOVE_BACKWARD, MOVE_RIGHT (= W, A, S, D),
    TURN_LEFT_RIGHT_DELTA (degrees per tic, > 0 = right), LOOK_UP_DOWN_DELTA (degrees per tic, > 0 = up),
    USE. Game variables: POSITION_X/Y/Z, ANGLE, PITCH, HEALTH.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import vizdoom as vzd

    g = vzd.DoomGame()
    g.set_doom_game_path(cfg.wad_path)
    g.set_doom_map(cfg.map)
    w, h = cfg.resolution
    g.set_screen_resolution(getattr(vzd.ScreenResolution, f"RES_{w}X{h}"))
    g.set_screen_format(vzd.ScreenFormat.RGB24)
    g.set_window_visible(False)
    g.set_sound_enabled(False)
    g.set_render_hud(cfg.hud)
    g.set_render_weapon(cfg.weapon)
    g.set_render_crosshair(cfg.crosshair)
    g.set_render_messages(cfg.messages)
    g.set_labels_buffer_enabled(cfg.labels)
    g.set_depth_buffer_enabled(cfg.depth)
    g.set_doom_skill(cfg.skill)
    g.set_episode_timeout(0)  # the env truncates by itself, in env steps
    g.set_mode(vzd.Mode.PLAYER)
    B = vzd.Button
    g.set_available_buttons(
        [
            B.MOVE_FORWARD,
            B.MOVE_LEFT,
            B.MOVE_BACKWARD,
            B.MOVE_RIGHT,
            B.TURN_LEFT_RIGHT_DELTA,
            B.LOOK_UP_DOWN_DELTA,
            B.USE,
        ]
    )
    V = vzd.GameVariable
    g.set_available_game_variables([V.POSITION_X, V.POSITION_Y, V.POSITION_Z, V.ANGLE, V.PITCH, V.HEALTH])
    if cfg.reward == "game":
        g.set_kill_reward(1.0)
        g.set_item_reward(0.1)
        g.set_secret_reward(1.0)
        g.set_map_exit_reward(10.0)
        g.set_death_penalty(10.0)
    # sv_cheats: needed for the `warp` (random start) and `god` console commands.
    args = "+sv_cheats 1"
    if not cfg.monsters:
        args += " -nomonsters"
    if not cfg.messages:
        # render_messages hides only the top-left log; these cvars hide the centred secret/kill notices.
        # ("You need a key" notices cannot be hidden; auto_use presses USE sparingly so they stay rare.)
        args += " +cl_showsecretmessage 0 +cl_showmultikills 0 +cl_showsprees 0"
    g.add_game_args(args)
    g.set_doom_config_path(os.path.join(workdir, "_vizdoom.ini"))
    # The engine process inherits the cwd at init(); chdir briefly so its files land in workdir.
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        g.init()
    finally:
        os.chdir(cwd)
    return g


def read_pose(game_variables: np.ndarray) -> np.ndarray:
    """ViZDoom game variables (as set by :func:`create_game`) -> float32 [5] (x, y, z, yaw, pitch)."""
    x, y, z, angle, pitch = (float(v) for v in game_variables[:5])
    return np.array([x, y, z, angle % 360.0, 0.0 - pitch], dtype=np.float32)
