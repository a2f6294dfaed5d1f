"""The real game env ViZDoomWASD-v0: API checks, determinism, geometry of movement, clear errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import lingbot_env  # noqa: F401  (registers the env ids)
from lingbot_env.actions import make_action
from lingbot_env.doom.env import ViZDoomWASDEnv
from lingbot_env.doom.game import DoomConfig
from lingbot_env.doom.wad import map_lines, resolve_wad

pytest.importorskip("vizdoom")


@pytest.fixture
def quiet_env():
    """MAP01 of freedoom2 without monsters, so nothing but the actions moves the player."""
    env = ViZDoomWASDEnv(map="MAP01", monsters=False)
    yield env
    env.close()


def test_gymnasium_and_sb3_check_env():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ViZDoomWASD-v0", resolution=(160, 120), max_steps=50)
    try:
        check_env(env.unwrapped, skip_render_check=False)
        with warnings.catch_warnings():
            # SB3 only recommends a symmetric [-1, 1] Box; keys in [0, 1] are the shared definition.
            warnings.filterwarnings("ignore", message=".*symmetric and normalized Box.*")
            sb3_check_env(env.unwrapped, warn=True)
    finally:
        env.close()


def test_step_output_format():
    env = ViZDoomWASDEnv(frame_size=(128, 96), depth=True)
    try:
        obs, info = env.reset(seed=3)
        assert obs.shape == (96, 128, 3) and obs.dtype == np.uint8
        assert info["frames"].shape == (1, 96, 128, 3)
        obs, reward, terminated, truncated, info = env.step(make_action(w=True, yaw=0.3))
        assert info["frames"].shape == (4, 96, 128, 3) and info["frames"].dtype == np.uint8
        np.testing.assert_array_equal(obs, info["frames"][-1])
        assert info["poses"].shape == (4, 5) and info["pose"].shape == (5,)
        assert info["depth"].shape == (96, 128)
        assert info["map"] == "MAP01" and info["wad"] == "freedoom2" and info["frames_valid"] == 4
        assert isinstance(info["caption"], str) and info["caption"].startswith("a ")
        assert isinstance(reward, float) and not terminated and not truncated
        for obj in info["visible_objects"]:
            x, y, w, h = obj["box"]
            assert 0 <= x <= 128 and 0 <= y <= 96 and obj["side"] in ("left", "ahead", "right")
    finally:
        env.close()


def test_same_seed_and_actions_give_identical_frames():
    rng = np.random.default_rng(0)
    actions = [rng.random(6).astype(np.float32) * [1, 1, 1, 1, 2, 2] - [0, 0, 0, 0, 1, 1] for _ in range(12)]

    def rollout(env: ViZDoomWASDEnv, seed: int) -> tuple[np.ndarray, np.ndarray]:
        obs, info = env.reset(seed=seed)
        frames, poses = [info["frames"]], [info["poses"]]
        for a in actions:
            obs, *_, info = env.step(a)
            frames.append(info["frames"])
            poses.append(info["poses"])
        return np.concatenate(frames), np.concatenate(poses)

    kw = dict(map="MAP02", random_start=True, monsters=True)
    a, b = ViZDoomWASDEnv(**kw), ViZDoomWASDEnv(**kw)
    try:
        fa, pa = rollout(a, 11)
        fc, _ = rollout(b, 12)  # b first plays another episode: a different engine history
        fb, pb = rollout(b, 11)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(pa, pb)
        assert not np.array_equal(fa[0], fc[0])  # another seed starts elsewhere: the check is not vacuous
    finally:
        a.close()
        b.close()


def test_frames_do_not_depend_on_earlier_episodes():
    """The engine eases the weapon bob with a global that survives level restarts; reset must settle it."""
    actions = [make_action(w=True, yaw=0.3)] * 3 + [make_action(d=True)] * 2 + [make_action(s=True, pitch=0.5)] * 2

    def rollout(env: ViZDoomWASDEnv, map_name: str, seed: int) -> np.ndarray:
        frames = [env.reset(seed=seed, options={"map": map_name})[1]["frames"]]
        frames += [env.step(a)[4]["frames"] for a in actions]
        return np.concatenate(frames)

    kw = dict(random_start=True, god_mode=True, depth=True)
    fresh, used = ViZDoomWASDEnv(**kw), ViZDoomWASDEnv(**kw)
    try:
        want = rollout(fresh, "MAP21", 5)
        rollout(used, "MAP03", 9)
        rollout(used, "MAP03", 10)
        np.testing.assert_array_equal(rollout(used, "MAP21", 5), want)
    finally:
        fresh.close()
        used.close()


def test_w_moves_forward_along_yaw(quiet_env):
    obs, info = quiet_env.reset(seed=0)
    np.testing.assert_allclose(info["pose"], [-192, -192, 0, 0, 0])  # MAP01 player start, facing east
    for _ in range(2):
        obs, *_, info = quiet_env.step(make_action(yaw=1.0))  # turn right 16 degrees: open space ahead
    start = info["pose"].copy()
    assert start[3] == pytest.approx(344.0, abs=0.1)
    for _ in range(4):
        obs, *_, info = quiet_env.step(make_action(w=True))
    d = info["pose"][:2] - start[:2]
    assert np.hypot(*d) > 120.0
    heading = np.degrees(np.arctan2(d[1], d[0])) % 360.0
    assert heading == pytest.approx(start[3], abs=3.0)
    assert info["pose"][3] == pytest.approx(start[3], abs=1e-3)  # W alone does not turn


def test_turn_signs(quiet_env):
    """yaw > 0 turns right = Doom angle decreases (counter-clockwise convention); pitch > 0 looks up."""
    obs, info = quiet_env.reset(seed=0)
    obs, *_, info = quiet_env.step(make_action(yaw=1.0))
    assert info["pose"][3] == pytest.approx(360.0 - 8.0, abs=0.05)  # 4 frames x 2 degrees
    np.testing.assert_allclose(info["poses"][:, 3], [358, 356, 354, 352], atol=0.05)
    obs, *_, info = quiet_env.step(make_action(yaw=-0.5))
    assert info["pose"][3] == pytest.approx(356.0, abs=0.05)
    obs, *_, info = quiet_env.step(make_action(pitch=1.0))
    assert info["pose"][4] == pytest.approx(8.0, abs=0.05)
    np.testing.assert_allclose(info["pose"][:2], [-192, -192])  # turning does not move


def test_walking_into_a_wall_stops(quiet_env):
    """MAP01 start (-192, -192): facing south there is a one-sided wall at y = -288."""
    walls = map_lines(resolve_wad("freedoom2"), "MAP01")
    on_wall = (walls[:, 1] == -288) & (walls[:, 3] == -288) & (np.minimum(walls[:, 0], walls[:, 2]) <= -192)
    assert on_wall.any()
    obs, info = quiet_env.reset(seed=0)
    for _ in range(12):
        obs, *_, info = quiet_env.step(make_action(yaw=0.9375))  # 12 x 4 x 1.875 = 90 degrees right
    assert info["pose"][3] == pytest.approx(270.0, abs=1.0)
    ys = []
    for _ in range(8):
        obs, *_, info = quiet_env.step(make_action(w=True))
        ys.append(info["poses"][:, 1])
    ys = np.concatenate(ys)
    assert ys[4] < -220.0  # it did walk south first
    np.testing.assert_allclose(ys[-12:], -288.0 + 16.0, atol=0.5)  # stopped one player radius short


def test_config_seed_is_used_by_the_first_reset():
    a, b = ViZDoomWASDEnv(seed=5, random_start=True), ViZDoomWASDEnv(random_start=True)
    try:
        obs_a, info_a = a.reset()
        obs_b, info_b = b.reset(seed=5)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(info_a["pose"], info_b["pose"])
    finally:
        a.close()
        b.close()


def test_episode_truncates_at_max_steps():
    env = ViZDoomWASDEnv(max_steps=3, monsters=False)
    try:
        env.reset(seed=0)
        flags = [env.step(make_action())[3] for _ in range(3)]
        assert flags == [False, False, True]
    finally:
        env.close()


def test_bad_inputs_raise_clear_errors(quiet_env):
    with pytest.raises(ValueError, match="unknown map 'MAP99' for WAD freedoom2: available maps are MAP01"):
        DoomConfig(map="MAP99")
    with pytest.raises(ValueError, match="unknown map 'E1M1'"):
        gym.make("ViZDoomWASD-v0", map="E1M1")
    with pytest.raises(ValueError, match="unsupported resolution 123x77"):
        DoomConfig(resolution=(123, 77))
    with pytest.raises(ValueError, match="unsupported resolution 320x200.*frame_size"):
        DoomConfig(resolution="320x200")  # ViZDoom has it, but it is not 4:3
    with pytest.raises(ValueError, match="unknown WAD 'doom3'"):
        DoomConfig(wad="doom3")
    with pytest.raises(ValueError, match="frame_size must be positive"):
        DoomConfig(frame_size=(0, 96))
    with pytest.raises(RuntimeError, match="reset"):
        quiet_env.step(make_action())
    quiet_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        quiet_env.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        quiet_env.step(np.array([1, 0, 0, 0, np.nan, 0], dtype=np.float32))
    with pytest.raises(ValueError, match="unknown map 'MAP77'"):
        quiet_env.reset(options={"map": "MAP77"})
    with pytest.raises(ValueError, match="unknown reset options"):
        quiet_env.reset(options={"level": 2})


def test_map_switch_and_320x240():
    env = ViZDoomWASDEnv(resolution="320x240", labels=False, monsters=False)
    try:
        obs, info = env.reset(seed=0, options={"map": "MAP03"})
        assert obs.shape == (240, 320, 3) and info["map"] == "MAP03"
        assert "caption" not in info
        obs, info = env.reset(seed=0, options={"map": "map01"})
        np.testing.assert_allclose(info["pose"][:2], [-192, -192])
    finally:
        env.close()
