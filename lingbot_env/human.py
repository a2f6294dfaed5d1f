"""Human play: a pygame window, keyboard + mouse -> the shared ``[W, A, S, D, yaw, pitch]`` action.

Controls (:data:`CONTROLS_HELP`):

============================  =====================================================================
W / A / S / D                 forward / strafe left / back / strafe right
mouse (while grabbed)         look: right/left = yaw, up/down = pitch (relative motion, no borders)
arrow keys or I / J / K / L   look without the mouse: left/right = yaw, up/down = pitch
click in the window           grab the mouse
Esc                           release the mouse; Esc again (or closing the window) quits
============================  =====================================================================

:class:`InputState` is the pure event -> action mapping (no window needed; tests feed it posted events).
:class:`HumanRenderer` owns the window: it draws frames scaled up by an integer factor with an FPS / step
latency overlay, paces them at the video frame rate and feeds its events to an ``InputState``.
:func:`play` is the interactive loop used by ``python -m lingbot_env``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (after the banner switch)

CONTROLS_HELP = (
    "W/A/S/D move, mouse or arrows/IJKL look, click grabs the mouse, Esc releases it, Esc again or close quits"
)

MOVE_KEYS: dict[int, int] = {pygame.K_w: 0, pygame.K_a: 1, pygame.K_s: 2, pygame.K_d: 3}
TURN_LEFT = (pygame.K_LEFT, pygame.K_j)
TURN_RIGHT = (pygame.K_RIGHT, pygame.K_l)
LOOK_UP = (pygame.K_UP, pygame.K_i)
LOOK_DOWN = (pygame.K_DOWN, pygame.K_k)
TRACKED_KEYS = frozenset((*MOVE_KEYS, *TURN_LEFT, *TURN_RIGHT, *LOOK_UP, *LOOK_DOWN))


@dataclass(frozen=True)
class ControlSettings:
    """How keys and the mouse become yaw/pitch.

    ``mouse_sensitivity``: action units per pixel of mouse motion collected during one step (1/40: moving 40 px
    within a step turns at the full rate, 2 degrees per video frame); motion beyond that is clipped.
    ``key_turn``: yaw/pitch magnitude of the arrow keys / IJKL. ``invert_mouse_y``: mouse up looks down.
    """

    mouse_sensitivity: float = 1 / 40
    key_turn: float = 1.0
    invert_mouse_y: bool = False


class InputState:
    """Keyboard and mouse state -> action vector ``float32 [6]`` = ``[W, A, S, D, yaw, pitch]``.

    Feed it pygame events with :meth:`handle`; :meth:`action` reads the held keys and the mouse motion gathered
    since the previous call (consumed). Mouse motion counts only while the mouse is grabbed, so moving the pointer
    out of a released window does not turn the view. Keys are tracked physically: holding Left and J and releasing
    J keeps turning. Losing the window focus releases every key (no stuck keys) and the grab.
    """

    def __init__(self, settings: ControlSettings | None = None, grabbed: bool = False) -> None:
        self.settings = settings or ControlSettings()
        self.pressed: set[int] = set()
        self.mouse = np.zeros(2)  # (dx, dy) pixels since the last action()
        self.grabbed = grabbed
        self.quit_requested = False

    def handle(self, event: Any) -> None:
        """Update from one pygame event (``type`` plus ``key`` / ``rel`` as pygame gives them)."""
        kind = event.type
        if kind == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                if self.grabbed:
                    self.grabbed = False
                    self.mouse[:] = 0
                else:
                    self.quit_requested = True
            elif event.key in TRACKED_KEYS:
                self.pressed.add(event.key)
        elif kind == pygame.KEYUP:
            self.pressed.discard(event.key)
        elif kind == pygame.MOUSEMOTION:
            if self.grabbed:
                self.mouse += np.asarray(event.rel, dtype=np.float64)
        elif kind == pygame.MOUSEBUTTONDOWN:
            self.grabbed = True
        elif kind in (pygame.QUIT, pygame.WINDOWCLOSE):
            self.quit_requested = True
        elif kind == pygame.WINDOWFOCUSLOST:
            self.release_all()

    def handle_all(self, events: Iterable[Any]) -> None:
        for event in events:
            self.handle(event)

    def release_all(self) -> None:
        self.pressed.clear()
        self.mouse[:] = 0
        self.grabbed = False

    def _held(self, keys: Iterable[int]) -> float:
        return 1.0 if any(k in self.pressed for k in keys) else 0.0

    def action(self, consume: bool = True) -> np.ndarray:
        """The current action ``float32 [6]``; ``consume`` resets the gathered mouse motion."""
        s = self.settings
        out = np.zeros(6, dtype=np.float32)
        for key, i in MOVE_KEYS.items():
            if key in self.pressed:
                out[i] = 1.0
        dy = self.mouse[1] if s.invert_mouse_y else -self.mouse[1]  # screen y grows downwards; pitch > 0 is up
        yaw = s.key_turn * (self._held(TURN_RIGHT) - self._held(TURN_LEFT)) + self.mouse[0] * s.mouse_sensitivity
        pitch = s.key_turn * (self._held(LOOK_UP) - self._held(LOOK_DOWN)) + dy * s.mouse_sensitivity
        out[4], out[5] = np.clip(yaw, -1, 1), np.clip(pitch, -1, 1)
        if consume:
            self.mouse[:] = 0
        return out


def default_scale(height: int, width: int, max_size: tuple[int, int] = (1280, 800)) -> int:
    """The largest integer factor that keeps the window within ``max_size`` (width, height); at least 1."""
    return max(1, min(max_size[0] // width, max_size[1] // height))


class HumanRenderer:
    """A pygame window showing ``uint8 [H, W, 3]`` frames scaled up ``scale`` times (nearest neighbour).

    :meth:`show` draws a chunk of frames paced at ``fps`` (never waiting when the model is slower than real
    time) and processes window events between frames into :attr:`input`. The overlay shows the displayed frames
    per second, the latest step latency and a controls hint. After the player asks to quit, the window closes
    at the next :meth:`show` and further calls do nothing.
    """

    def __init__(
        self,
        height: int,
        width: int,
        scale: int | None = None,
        fps: float = 16.0,
        title: str = "LingBot-World",
        overlay: bool = True,
        settings: ControlSettings | None = None,
    ) -> None:
        if scale is not None and (int(scale) != scale or scale < 1):
            raise ValueError(f"window scale must be a positive integer, got {scale!r}")
        self.height, self.width = height, width
        self.scale = int(scale) if scale is not None else default_scale(height, width)
        self.fps = float(fps)
        self.overlay = overlay
        self.input = InputState(settings)
        pygame.display.init()
        pygame.font.init()
        self.screen = pygame.display.set_mode((width * self.scale, height * self.scale))
        pygame.display.set_caption(title)
        self.font = pygame.font.Font(None, max(16, min(28, 6 * self.scale + 10)))
        self.clock = pygame.time.Clock()
        self._shown: deque[float] = deque(maxlen=48)
        self._grab_applied = False
        self.step_ms: float | None = None
        self.closed = False

    # ------------------------------------------------------------------ input
    @property
    def should_quit(self) -> bool:
        return self.closed or self.input.quit_requested

    def grab(self, on: bool = True) -> None:
        self.input.grabbed = on
        self._sync_grab()

    def _sync_grab(self) -> None:
        if self.closed or self.input.grabbed == self._grab_applied:
            return
        # Hidden cursor + grabbed input = SDL's relative mode: motion is not stopped by the window border.
        pygame.event.set_grab(self.input.grabbed)
        pygame.mouse.set_visible(not self.input.grabbed)
        pygame.mouse.get_rel()  # forget motion made before the change
        self._grab_applied = self.input.grabbed

    def poll(self) -> None:
        """Process pending window events into :attr:`input`."""
        if self.closed:
            return
        self.input.handle_all(pygame.event.get())
        self._sync_grab()

    def action(self) -> np.ndarray:
        """Poll, then the player's action ``float32 [6]`` (mouse motion since the last call)."""
        self.poll()
        return self.input.action()

    # ------------------------------------------------------------------ drawing
    def fps_shown(self) -> float:
        t = self._shown
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def _draw(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame must be [{self.height}, {self.width}, 3] uint8, got {frame.shape}")
        surf = pygame.image.frombuffer(np.ascontiguousarray(frame, dtype=np.uint8), (self.width, self.height), "RGB")
        self.screen.blit(pygame.transform.scale(surf, self.screen.get_size()), (0, 0))
        if self.overlay:
            step = "-" if self.step_ms is None else f"{self.step_ms:.0f} ms"
            hint = "Esc: release mouse" if self.input.grabbed else "click: grab mouse, Esc: quit"
            y = 2
            for line in (f"{self.fps_shown():4.1f} fps  step {step}", hint):
                text = self.font.render(line, True, (255, 255, 255), (0, 0, 0))
                text.set_alpha(200)
                self.screen.blit(text, (4, y))
                y += text.get_height()
        pygame.display.flip()

    def show(self, frames: np.ndarray, step_ms: float | None = None) -> None:
        """Draw ``frames`` ``uint8 [F, H, W, 3]`` (or one ``[H, W, 3]``) at ``fps``; ``step_ms`` for the overlay."""
        if self.input.quit_requested:
            self.close()
        if self.closed:
            return
        if step_ms is not None:
            self.step_ms = step_ms
        frames = np.asarray(frames)
        for frame in frames[None] if frames.ndim == 3 else frames:
            self.poll()
            if self.closed:
                return
            self._draw(frame)
            self.clock.tick(self.fps)
            self._shown.append(time.perf_counter())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            pygame.event.set_grab(False)
            pygame.mouse.set_visible(True)
            pygame.display.quit()


def play(
    env: Any,
    viewer: HumanRenderer | None = None,
    *,
    max_steps: int | None = None,
    on_frames: Callable[[np.ndarray], None] | None = None,
    reset_kwargs: dict[str, Any] | None = None,
    scale: int | None = None,
) -> int:
    """Play ``env`` with keyboard and mouse until the player quits or ``max_steps`` steps; returns the steps taken.

    ``env``: a :class:`~lingbot_env.world_env.LingBotWorldEnv` made with ``render_mode="human"`` (it draws into its
    own window) or any env with the shared action space whose ``info["frames"]`` holds each step's frames, such as
    ``ViZDoomWASD-v0`` (a window is opened for it). Episodes that end are reset with ``reset_kwargs``.
    ``on_frames(frames [F, H, W, 3])`` sees every new frame, the start frame included (e.g. a video writer).
    """
    base = env.unwrapped
    draws_itself = getattr(base, "render_mode", None) == "human"
    reset_kwargs = dict(reset_kwargs or {})
    _, info = env.reset(**reset_kwargs)
    if draws_itself:
        viewer = base.viewer
    elif viewer is None:
        h, w = env.observation_space.shape[:2]
        viewer = HumanRenderer(
            h, w, scale=scale, fps=env.metadata.get("video_fps", env.metadata.get("render_fps", 16.0))
        )
    if not draws_itself:
        viewer.show(info["frames"])
    if on_frames is not None:
        on_frames(info["frames"])
    viewer.grab(True)
    steps = 0
    try:
        while not viewer.should_quit and (max_steps is None or steps < max_steps):
            action = viewer.action()
            t0 = time.perf_counter()
            _, _, terminated, truncated, info = env.step(action)
            step_ms = info.get("step_ms", (time.perf_counter() - t0) * 1e3)
            steps += 1
            if on_frames is not None:
                on_frames(info["frames"])
            if not draws_itself:
                viewer.show(info["frames"], step_ms=step_ms)
            if terminated or truncated:
                _, info = env.reset(**reset_kwargs)
                if on_frames is not None:
                    on_frames(info["frames"])
                if not draws_itself:
                    viewer.show(info["frames"])
    finally:
        if not draws_itself:
            viewer.close()
    return steps
