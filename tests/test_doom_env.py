"""The real game env ViZDoomWASD-v0: API checks, determinism, geometry of movement, clear errors."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest

import lingbot_env  # noqa: F401  (registers the env ids)
from lingbot_env.actions import make_action
from lingbot_env.doom.env import ViZDoomWASDEnv
from lingbot_env.doom.game import DoomConfig
from lingbot_env.doom.labels import noun
from lingbot_env.doom.wad import check_map, map_lines, map_walls, read_things, resolve_wad, vizdoom_dir

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


# ----------------------------------------------------------------------------------------- labels and captions
def test_visible_objects_and_caption_at_a_known_spot():
    """MAP01, random start of seed 1, walking W: a shotgun, zombiemen and a medikit come into view."""
    env = ViZDoomWASDEnv(map="MAP01", random_start=True, god_mode=True)
    try:
        infos = [env.reset(seed=1)[1]]
        infos += [env.step(make_action(w=True))[4] for _ in range(5)]
    finally:
        env.close()
    assert infos[0]["visible_objects"], "nothing visible at the known spot"
    seen = {o["name"] for info in infos for o in info["visible_objects"]}
    assert {"Zombieman", "Medikit", "Shotgun"} <= seen
    for info in infos:
        for o in info["visible_objects"]:
            x, y, w, h = o["box"]
            assert x >= 0 and y >= 0 and x + w <= 160 and y + h <= 120 and w > 0 and h > 0
            centre = (x + w / 2) / 160
            assert o["side"] == ("left" if centre < 1 / 3 else "right" if centre > 2 / 3 else "ahead")
            # The screen side agrees with the world geometry: right of the view direction = positive bearing.
            if o["side"] == "right":
                assert o["bearing_deg"] > 0
            elif o["side"] == "left":
                assert o["bearing_deg"] < 0
            else:
                assert abs(o["bearing_deg"]) < 30
            dx, dy = o["position"][0] - info["pose"][0], o["position"][1] - info["pose"][1]
            assert o["distance"] >= np.hypot(dx, dy) - 1e-3
        distances = [o["distance"] for o in info["visible_objects"]]
        assert distances == sorted(distances)
    # The caption names the zombiemen with their sides once they are in view (monsters come first).
    zombie_steps = [i for i, info in enumerate(infos) if any(o["name"] == "Zombieman" for o in info["visible_objects"])]
    assert zombie_steps
    for i in zombie_steps:
        objs = infos[i]["visible_objects"]
        for side in {o["side"] for o in objs if o["name"] == "Zombieman"}:
            count = sum(o["name"] == "Zombieman" and o["side"] == side for o in objs)
            where = "ahead" if side == "ahead" else f"on the {side}"
            assert f"{noun('Zombieman', count)} {where}" in infos[i]["caption"], infos[i]["caption"]
        assert "zombiem" in infos[i]["caption"].split(", ")[1]  # the first object phrase: monsters rank first
    # ... and the medikit, when no more than three groups of higher rank are on screen.
    medikit = [info for info in infos if any(o["name"] == "Medikit" for o in info["visible_objects"])]
    assert any("a medikit ahead" in info["caption"] or "a medikit on the" in info["caption"] for info in medikit)
    # Decorations and light sources are reported as visible but never named in the caption.
    assert any(o["category"] == "LightSource" for info in infos for o in info["visible_objects"])
    assert not any("column" in info["caption"] for info in infos)


# ----------------------------------------------------------------------------------------- option toggles
HAS_FREEDOOM1 = os.path.isfile(os.path.join(vizdoom_dir(), "freedoom1.wad"))


def _start(**kw) -> tuple[np.ndarray, dict]:
    env = ViZDoomWASDEnv(**kw)
    try:
        return env.reset(seed=0)
    finally:
        env.close()


def _monsters_seen_over_a_turn(**kw) -> list[str]:
    """At the known spot of seed 1 (zombiemen in view), look around a full turn; names of the monsters seen."""
    env = ViZDoomWASDEnv(map="MAP01", random_start=True, god_mode=True, **kw)
    try:
        infos = [env.reset(seed=1)[1]]
        infos += [env.step(make_action(w=True))[4] for _ in range(3)]
        infos += [env.step(make_action(yaw=1.0))[4] for _ in range(45)]  # 45 x 4 frames x 2 degrees = 360
    finally:
        env.close()
    assert abs((infos[-1]["pose"][3] - infos[3]["pose"][3] + 180) % 360 - 180) < 1.0  # a whole turn
    return [o["name"] for info in infos for o in info["visible_objects"] if o["category"] == "Monster"]


def _red(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(int)
    return (f[..., 0] > 120) & (f[..., 1] < 60) & (f[..., 2] < 60)


@pytest.mark.parametrize(
    "toggle",
    [
        "hud",
        "no_weapon",
        "no_monsters",
        pytest.param(
            "freedoom1",
            marks=pytest.mark.skipif(not HAS_FREEDOOM1, reason="freedoom1.wad is not in this vizdoom package"),
        ),
    ],
)
def test_option_toggles(toggle):
    if toggle == "no_monsters":
        assert "Zombieman" in _monsters_seen_over_a_turn()  # the check below is not vacuous
        assert _monsters_seen_over_a_turn(monsters=False) == []
        return
    base, base_info = _start()
    assert not _red(base[-19:]).any()
    if toggle == "hud":
        obs, info = _start(hud=True)
        # The status bar fills the bottom 32/200 of the screen, with its red numbers (ammo 50, health 100%).
        assert _red(obs[-19:]).sum() > 50 and not _red(obs[:-19]).any()
        assert (obs[-19:] != base[-19:]).any(-1).mean() > 0.8
        np.testing.assert_array_equal(info["pose"], base_info["pose"])
    elif toggle == "no_weapon":
        obs, info = _start(weapon=False)
        diff = (obs != base).any(-1)
        # Only the pistol's place (bottom centre) changes; the rest of the view is the same.
        assert diff.sum() > 200
        rows, cols = np.nonzero(diff)
        assert rows.min() >= 60 and cols.min() >= 40 and cols.max() < 120
        np.testing.assert_array_equal(info["pose"], base_info["pose"])
    else:
        obs, info = _start(wad="freedoom1", map="E1M1")
        assert info["wad"] == "freedoom1" and info["map"] == "E1M1"
        start = read_things(resolve_wad("freedoom1"), "E1M1")
        start = start[start["type"] == 1][0]  # player 1 start
        np.testing.assert_allclose(info["pose"][:2], [start["x"], start["y"]])
        assert (obs != base).any(-1).mean() > 0.5
        assert check_map(resolve_wad("freedoom1"), "e1m1") == "E1M1"
        with pytest.raises(ValueError, match="unknown map 'MAP01' for WAD freedoom1"):
            DoomConfig(wad="freedoom1", map="MAP01")


# ----------------------------------------------------------------------------------------- doors
@pytest.mark.parametrize("auto_use", [True, False])
def test_walking_into_a_door_opens_it_only_with_auto_use(auto_use):
    """MAP01: walking east from the player start (-192, -192) meets a door whose near face is x = 704."""
    wad = resolve_wad("freedoom2")
    near = [(704, -96, 704, -224), (720, -224, 720, -96)]  # its two faces, both on the walking line y = -192
    lines = {tuple(int(v) for v in line) for line in map_lines(wad, "MAP01")}
    assert set(near) <= lines
    walls = {tuple(int(v) for v in line) for line in map_walls(wad, "MAP01")}
    assert not set(near) & walls  # an unlocked door: passable once opened
    env = ViZDoomWASDEnv(map="MAP01", monsters=False, labels=False, auto_use=auto_use)
    try:
        obs, info = env.reset(seed=0)
        np.testing.assert_allclose(info["pose"][[0, 1, 3]], [-192, -192, 0])  # facing east
        xs = np.concatenate([env.step(make_action(w=True))[4]["poses"][:, 0] for _ in range(20)])
    finally:
        env.close()
    assert xs[50] > 600  # it walked up to the door
    if auto_use:
        assert xs[-1] > 720 + 16 + 32  # through the door and well past its far face
    else:
        assert xs.max() == pytest.approx(704 - 16, abs=0.5)  # stopped one player radius short of the door
        np.testing.assert_allclose(xs[-20:], 704 - 16, atol=0.5)
