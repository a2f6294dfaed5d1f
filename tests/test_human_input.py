"""Human play, headless: posted pygame key/mouse events -> action vectors; the window, its overlay and quitting;
the interactive loop on a tiny world and on the real game."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pygame
import pytest
from helpers import tiny_world

from lingbot_env.human import ControlSettings, HumanRenderer, InputState, default_scale, play
from lingbot_env.world_env import LingBotWorldEnv

IMG = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)


@pytest.fixture
def events():
    """Post events into pygame's real queue (dummy video driver) and hand them back as pygame delivers them."""
    pygame.display.init()
    pygame.event.clear()

    def post_and_get(*specs: tuple) -> list:
        for kind, attrs in specs:
            pygame.event.post(pygame.event.Event(kind, **attrs))
        return pygame.event.get()

    yield post_and_get
    pygame.display.quit()


def key(kind: int, k: int) -> tuple:
    return kind, {"key": k, "mod": 0, "unicode": "", "scancode": 0}


def down(k: int) -> tuple:
    return key(pygame.KEYDOWN, k)


def up(k: int) -> tuple:
    return key(pygame.KEYUP, k)


def motion(dx: int, dy: int) -> tuple:
    return pygame.MOUSEMOTION, {"rel": (dx, dy), "pos": (10, 10), "buttons": (0, 0, 0)}


def test_wasd_keys_map_to_the_key_slots(events):
    state = InputState()
    state.handle_all(events(down(pygame.K_w), down(pygame.K_d)))
    assert state.action().tolist() == [1, 0, 0, 1, 0, 0]
    state.handle_all(events(up(pygame.K_w), down(pygame.K_a), down(pygame.K_s)))
    assert state.action().tolist() == [0, 1, 1, 1, 0, 0]
    state.handle_all(events(up(pygame.K_a), up(pygame.K_s), up(pygame.K_d), down(pygame.K_x)))
    assert state.action().tolist() == [0] * 6  # untracked keys do nothing


@pytest.mark.parametrize(
    ("keys", "yaw", "pitch"),
    [
        ((pygame.K_RIGHT,), 1, 0),
        ((pygame.K_LEFT,), -1, 0),
        ((pygame.K_UP,), 0, 1),
        ((pygame.K_DOWN,), 0, -1),
        ((pygame.K_l,), 1, 0),
        ((pygame.K_j,), -1, 0),
        ((pygame.K_i,), 0, 1),
        ((pygame.K_k,), 0, -1),
        ((pygame.K_LEFT, pygame.K_RIGHT), 0, 0),
        ((pygame.K_j, pygame.K_i, pygame.K_w), -1, 1),
    ],
)
def test_arrows_and_ijkl_look(events, keys, yaw, pitch):
    state = InputState()
    state.handle_all(events(*(down(k) for k in keys)))
    action = state.action()
    assert (action[4], action[5]) == (yaw, pitch)
    assert action[0] == (pygame.K_w in keys)


def test_two_keys_for_one_direction_are_tracked_separately(events):
    state = InputState(ControlSettings(key_turn=0.5))
    state.handle_all(events(down(pygame.K_LEFT), down(pygame.K_j), up(pygame.K_j)))
    assert state.action()[4] == -0.5  # Left still held
    state.handle_all(events(up(pygame.K_LEFT)))
    assert state.action()[4] == 0


def test_mouse_look_only_while_grabbed_scaled_clipped_and_consumed(events):
    state = InputState(ControlSettings(mouse_sensitivity=0.05))
    state.handle_all(events(motion(10, 0)))
    assert state.action().tolist() == [0] * 6  # not grabbed: the pointer is free, the view does not turn
    state.handle_all(events((pygame.MOUSEBUTTONDOWN, {"button": 1, "pos": (5, 5)})))
    assert state.grabbed
    state.handle_all(events(motion(4, 0), motion(2, -4)))  # right 6 px, up 4 px
    action = state.action()
    assert action[4] == pytest.approx(0.3) and action[5] == pytest.approx(0.2)  # mouse up looks up
    assert state.action()[4:].tolist() == [0, 0]  # consumed
    state.handle_all(events(motion(-100, 100)))
    assert state.action()[4:].tolist() == [-1, -1]  # clipped to the Box
    inverted = InputState(ControlSettings(mouse_sensitivity=0.05, invert_mouse_y=True), grabbed=True)
    inverted.handle_all(events(motion(0, -4)))
    assert inverted.action()[5] == pytest.approx(-0.2)
    both = InputState(grabbed=True)
    both.handle_all(events(down(pygame.K_RIGHT), motion(-20, 0)))
    assert both.action()[4] == pytest.approx(1 - 20 / 40)  # keys and mouse add up


def test_escape_releases_then_quits_and_window_close_quits(events):
    state = InputState(grabbed=True)
    state.handle_all(events(down(pygame.K_w), down(pygame.K_ESCAPE)))
    assert not state.grabbed and not state.quit_requested
    assert state.action()[0] == 1  # keys still work with the mouse released
    state.handle_all(events(motion(30, 0)))
    assert state.action()[4] == 0
    state.handle_all(events(down(pygame.K_ESCAPE)))
    assert state.quit_requested
    closing = InputState()
    closing.handle_all(events((pygame.QUIT, {})))
    assert closing.quit_requested


def test_losing_focus_releases_keys_and_mouse(events):
    state = InputState(grabbed=True)
    state.handle_all(events(down(pygame.K_w), down(pygame.K_LEFT), motion(5, 5), (pygame.WINDOWFOCUSLOST, {})))
    assert state.action().tolist() == [0] * 6 and not state.grabbed


def test_renderer_draws_scaled_frames_with_overlay_and_quits_on_escape():
    assert default_scale(32, 48) == 25 and default_scale(480, 832) == 1 and default_scale(120, 160) == 6
    viewer = HumanRenderer(32, 48, scale=3, fps=1000.0)
    assert viewer.screen.get_size() == (144, 96)
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    frames[..., 0] = 200  # red
    viewer.overlay = False
    viewer.show(frames, step_ms=12.5)
    pixel = viewer.screen.get_at((140, 90))
    assert (pixel.r, pixel.g, pixel.b) == (200, 0, 0) and viewer.step_ms == 12.5
    viewer.overlay = True
    viewer.show(frames[0])
    assert viewer.screen.get_at((140, 90)).r == 200 and viewer.screen.get_at((6, 6))[:3] != (200, 0, 0)  # text box
    assert viewer.fps_shown() > 0
    viewer.grab(True)
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_d, mod=0, unicode="d", scancode=0))
    assert viewer.action().tolist() == [0, 0, 0, 1, 0, 0]
    for _ in range(2):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=0))
    viewer.poll()
    assert viewer.should_quit
    viewer.show(frames)  # closes the window cleanly, then nothing more happens
    assert viewer.closed and not pygame.display.get_init()
    viewer.show(frames)
    viewer.close()
    with pytest.raises(ValueError, match="positive integer"):
        HumanRenderer(32, 48, scale=0)


class RecordActions(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(np.array(action))
        return self.env.step(action)


def test_play_loop_on_the_generated_world_reads_keys_and_quits():
    env = RecordActions(LingBotWorldEnv(model=tiny_world, image=IMG, render_mode="human", window_scale=2))
    env.unwrapped.metadata["video_fps"] = 1000.0  # do not pace the test at video speed
    frames = []
    pygame.display.init()
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_w, mod=0, unicode="w", scancode=0))
    steps = play(env, max_steps=3, on_frames=frames.append)
    assert steps == 3 and [a.tolist() for a in env.actions] == [[1, 0, 0, 0, 0, 0]] * 3
    assert [len(f) for f in frames] == [1, 4, 4, 4]
    viewer = env.unwrapped.viewer
    assert viewer.screen.get_size() == (96, 64) and viewer.input.grabbed
    for _ in range(2):  # Esc releases the mouse, the second Esc quits
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=0))
    assert play(env, max_steps=50) <= 1
    env.close()
    assert env.unwrapped.viewer is None


def test_play_loop_opens_its_own_window_for_the_real_game():
    pytest.importorskip("vizdoom")
    import lingbot_env  # noqa: F401

    env = RecordActions(gym.make("ViZDoomWASD-v0", render_mode="rgb_array", labels=False, max_steps=2))
    env.metadata = {**env.metadata, "render_fps": 1000.0}
    pygame.display.init()
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RIGHT, mod=0, unicode="", scancode=0))
    frames = []
    assert play(env, max_steps=3, on_frames=frames.append, scale=1) == 3
    assert [a.tolist() for a in env.actions] == [[0, 0, 0, 0, 1, 0]] * 3
    assert [len(f) for f in frames] == [1, 4, 4, 1, 4]  # max_steps=2: the game reset after the second step
    assert not pygame.display.get_init()  # the loop closed the window it opened
    env.close()
