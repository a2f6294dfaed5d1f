"""First contact (issue 24): the standard Gymnasium / SB3 tools work with the env's defaults, threads have a
sensible default, and every input a new user gets wrong gets an error that names the fix."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pygame
import pytest
import torch
from helpers import tiny_world

import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
from lingbot_env.resolve import apply_num_threads, default_num_threads
from lingbot_env.world_env import LingBotWorldEnv

REPO = Path(__file__).resolve().parents[1]
RANDOM_WEIGHTS = "ignore:'doom-untrained'"  # its warning that the frames are noise


@pytest.fixture(scope="module")
def doom():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        env = gym.make("LingBotWorld-v0", model="doom-untrained", render_mode="rgb_array")
    yield env
    env.close()


@pytest.mark.filterwarnings(RANDOM_WEIGHTS)
def test_gymnasium_and_sb3_check_env_pass_with_the_defaults():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("LingBotWorld-v0", model="doom-untrained")  # no other argument
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_check_env(env)
    relevant = [
        str(w.message)
        for w in caught
        if "RANDOM weights" not in str(w.message) and "symmetric and normalized Box" not in str(w.message)
    ]
    assert relevant == []
    _, info = env.reset(seed=0)
    assert not [k for k in env.step(env.action_space.sample())[4] if k.endswith("_ms")]  # timings are opt-in
    assert isinstance(env.metadata["render_fps"], int) and env.metadata["video_fps"] == 17.5
    env.close()


def test_keys_to_action_maps_wasd_arrows_and_turn_keys():
    env = LingBotWorldEnv(model=tiny_world, image=np.zeros((32, 48, 3), np.uint8))
    table = env.get_keys_to_action()
    assert len(table) == 2**12 - 1 and all(env.action_space.contains(a) for a in table.values())
    expect = {
        (pygame.K_w,): [1, 0, 0, 0, 0, 0],
        (pygame.K_a,): [0, 1, 0, 0, 0, 0],
        tuple(sorted((pygame.K_s, pygame.K_d))): [0, 0, 1, 1, 0, 0],
        (pygame.K_RIGHT,): [0, 0, 0, 0, 1, 0],
        (pygame.K_j,): [0, 0, 0, 0, -1, 0],
        (pygame.K_UP,): [0, 0, 0, 0, 0, 1],
        (pygame.K_k,): [0, 0, 0, 0, 0, -1],
        tuple(sorted((pygame.K_LEFT, pygame.K_RIGHT))): [0, 0, 0, 0, 0, 0],
        tuple(sorted((pygame.K_w, pygame.K_l))): [1, 0, 0, 0, 1, 0],
    }
    for keys, action in expect.items():
        assert table[keys].tolist() == action, keys
    env.close()


@pytest.mark.filterwarnings("ignore:.*matplotlib is not installed")
def test_gymnasium_play_runs_headless_and_quits_on_a_scripted_event(doom):
    from gymnasium.utils.play import play

    pygame.display.init()
    assert pygame.display.get_driver() in ("dummy", "offscreen")
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    play(doom)  # the defaults: keys from get_keys_to_action, fps from metadata, noop 0
    actions = []

    def script(obs, next_obs, action, reward, terminated, truncated, info):
        actions.append(np.asarray(action).tolist())
        assert next_obs.shape == (96, 128, 3) and next_obs.dtype == np.uint8
        if len(actions) == 1:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_w, mod=0, unicode="w", scancode=0))
        elif len(actions) == 3:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    pygame.display.init()
    play(doom, callback=script)
    assert actions == [0, [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]  # no key: play's noop 0; then W held


def test_the_video_extra_brings_what_record_video_and_resize_need(tmp_path, doom):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {e.split(">")[0] for e in extras["video"]} == {"moviepy", "opencv-python-headless"}
    pytest.importorskip("moviepy")
    pytest.importorskip("cv2")
    from gymnasium.wrappers import RecordVideo, ResizeObservation

    env = RecordVideo(ResizeObservation(doom, (48, 64)), str(tmp_path / "videos"), episode_trigger=lambda e: True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (48, 64, 3)
    for _ in range(2):
        env.step(env.action_space.sample())
    env.stop_recording()
    assert [p.suffix for p in (tmp_path / "videos").iterdir()] == [".mp4"]


def test_threads_default_to_half_the_cores_at_most_four(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, want in ((1, 1), (2, 1), (8, 4), (64, 4)):
        monkeypatch.setattr(os, "cpu_count", lambda c=cores: c)
        assert default_num_threads() == want
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    torch.set_num_threads(2)
    env = LingBotWorldEnv(model=tiny_world, image=np.zeros((32, 48, 3), np.uint8))  # num_threads="auto"
    assert torch.get_num_threads() == env.num_threads == 1
    env.close()
    torch.set_num_threads(2)
    assert apply_num_threads(None) == 2  # torch's choice kept
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert apply_num_threads("auto") == 2  # the user's OMP_NUM_THREADS wins
    assert apply_num_threads(1) == 1
    with pytest.raises(ValueError, match="num_threads"):
        apply_num_threads(0)


# -- point 6: each bad input gets its error, naming the fix --------------------------------------------------------
def _step(action):
    env = LingBotWorldEnv(model=tiny_world, image=np.zeros((32, 48, 3), np.uint8))
    env.reset(seed=0)
    try:
        env.step(action)
    finally:
        env.close()


def _cli(*argv):
    from lingbot_env.__main__ import main

    code = main(list(argv))
    raise SystemExit(code)


def _no_model():
    from world_model.bundle import DEFAULT_BUNDLE

    if (DEFAULT_BUNDLE / "world.json").exists():
        pytest.skip("the embedded default world has landed")
    gym.make("LingBotWorld-v0")


def _factory_without_prefix(tmp_path):
    (tmp_path / "side_effect_module.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef make():\n    raise AssertionError\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        LingBotWorldEnv(model="side_effect_module:make")
    finally:
        sys.path.remove(str(tmp_path))
        assert not (tmp_path / "imported").exists(), "a model string was imported without 'factory:'"


POINT6 = {
    "string action": (lambda t: _step(["1", "0", "0", "0", "0", "0"]), ValueError, r"numeric .*got strings"),
    "complex action": (lambda t: _step([1j, 0, 0, 0, 0, 0]), ValueError, r"got complex numbers.*np\.real"),
    "cuda without CUDA": (
        lambda t: LingBotWorldEnv(model="doom-untrained", device="cuda"),
        ValueError,
        r"device='cuda', but .*; use device='cpu'",
    ),
    "interactive CLI without a display": (
        lambda t: _cli("--model", "doom-untrained"),
        SystemExit,
        None,  # exit 2, message checked below
    ),
    "no model": (_no_model, FileNotFoundError, r"model='doom-untrained' \(its architecture with random weights"),
    "CLI without --model": (lambda t: _cli("--headless", "--actions-preset", "tour"), SystemExit, None),
    "module:callable without factory:": (_factory_without_prefix, ValueError, r"write model='factory:side_effect"),
}


@pytest.mark.parametrize("case", list(POINT6))
def test_each_bad_first_input_gets_an_error_naming_the_fix(case, tmp_path, capsys):
    fn, exc, match = POINT6[case]
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(exc, match=match) as e:
            fn(tmp_path) if fn.__code__.co_argcount else fn()
    err = capsys.readouterr().err
    if case == "interactive CLI without a display":
        assert e.value.code == 2 and "needs a window" in err and "--headless" in err
    if case == "CLI without --model":
        from world_model.bundle import DEFAULT_BUNDLE

        if (DEFAULT_BUNDLE / "world.json").exists():
            pytest.skip("the embedded default world has landed")
        assert e.value.code == 2 and "--model doom-untrained" in err and "model=" not in err
