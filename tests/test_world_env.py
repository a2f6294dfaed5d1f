"""LingBotWorld-v0 (single env) on tiny random worlds: Gymnasium/SB3 conformance, determinism, info, truncation,
bad input, constant memory, PPO, the play CLI's headless mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_world

import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
from lingbot_env.actions import ActionClippedWarning
from lingbot_env.images import fit_image, prepare_image
from lingbot_env.pose import PoseTracker
from lingbot_env.world_env import LingBotWorldEnv
from world_model.control import KeyboardCamera

IMG = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)


FORWARD_RIGHT = np.array([1, 0, 0, 0, 0.5, 0], np.float32)


def make_env(**kw) -> LingBotWorldEnv:
    kw.setdefault("model", tiny_world)
    kw.setdefault("image", IMG)
    return LingBotWorldEnv(**kw)


def rollout(env, seed, actions) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    return [obs] + [env.step(a)[0] for a in actions]


# ----------------------------------------------------------------------------------------- conformance
def test_gymnasium_check_env_passes_without_warnings():
    from gymnasium.utils.env_checker import check_env

    # Default arguments: wall-clock timings stay out of info unless asked for (timing_info=True).
    env = gym.make("LingBotWorld-v0", model=tiny_world, image=IMG, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # unwrapped: check the env itself; its spec lets check_env also build the human and rgb_array modes.
        check_env(env.unwrapped)
    relevant = [
        str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, ActionClippedWarning))
    ]
    assert relevant == []
    env.close()


def test_sb3_check_env_passes_without_warnings():
    from stable_baselines3.common.env_checker import check_env

    env = make_env(model=lambda: tiny_world(1, 48, 64))  # >= 36 px: NatureCNN's minimum
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    relevant = [
        str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, ActionClippedWarning))
    ]
    # The one advisory left is about the shared action Box (keys in [0, 1]), which is the design, not a defect;
    # gymnasium.wrappers.RescaleAction(env, -1, 1) gives the symmetric form when an agent needs it.
    assert [m for m in relevant if not m.startswith("We recommend you to use a symmetric and normalized Box")] == []


def test_registered_and_import_is_cheap():
    env = gym.make("LingBotWorld-v0", model=tiny_world, image=IMG)
    assert isinstance(env.unwrapped, LingBotWorldEnv)
    env.close()
    code = "import sys, lingbot_env; print('torch' in sys.modules, 'world_model.world' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ----------------------------------------------------------------------------------------- behaviour
def test_same_seed_same_actions_same_frames():
    rng = np.random.default_rng(1)
    actions = rng.uniform([0, 0, 0, 0, -1, -1], 1, (4, 6)).astype(np.float32)
    a, b = make_env(), make_env()
    run1, run2, run3 = rollout(a, 7, actions), rollout(b, 7, actions), rollout(a, 7, actions)
    for x, y, z in zip(run1, run2, run3):
        assert np.array_equal(x, y) and np.array_equal(x, z)
    other = rollout(a, 8, actions)
    assert not np.array_equal(other[-1], run1[-1])
    # Unseeded resets continue np_random: a new episode, reproducible from the first seed.
    a.reset(seed=7)
    b.reset(seed=7)
    assert a.reset()[1]["seed"] == b.reset()[1]["seed"] != a.reset(seed=7)[1]["seed"]


def test_reset_and_step_info():
    env = make_env(prompt="a stone corridor", timing_info=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 48, 3) and obs.dtype == np.uint8
    assert np.array_equal(obs, fit_image(IMG, 32, 48))  # the image itself, not the VAE reconstruction
    assert info["frames"].shape == (1, 32, 48, 3) and np.array_equal(info["frames"][0], obs)
    assert info["reconstruction"].shape == (32, 48, 3) and not np.array_equal(info["reconstruction"], obs)
    assert info["prompt"] == "a stone corridor" and info["step"] == 0 and isinstance(info["seed"], int)
    assert np.array_equal(info["pose"], np.eye(4, dtype=np.float32))
    for t in (1, 2):
        obs, reward, terminated, truncated, info = env.step(FORWARD_RIGHT)
        assert info["step"] == t == env.step_count
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["frames"].shape == (4, 32, 48, 3) and info["frames"].dtype == np.uint8
    assert np.array_equal(obs, info["frames"][-1])
    assert info["poses"].shape == (4, 4, 4) and np.array_equal(info["pose"], info["poses"][-1])
    assert np.allclose(info["yaw_pitch"], [2 * 4 * 2 * 0.5, 0])  # 2 steps x 4 frames x 2 deg x 0.5
    assert info["pose"][2, 3] > 0 and info["pose"][0, 3] > 0  # moved forward (+z), drifting right while turning
    assert not info["action_clipped"] and np.array_equal(info["action"], FORWARD_RIGHT)
    for key in ("step_ms", "generate_ms", "decode_ms"):
        assert info[key] > 0
    assert info["step_ms"] >= info["generate_ms"] + info["decode_ms"]


def test_pose_tracker_matches_official_keyboard_camera():
    """info["pose"] is the core's KeyboardCamera held for a step: one camera per row, the keys thresholded."""
    rng = np.random.default_rng(3)
    actions = rng.uniform([0, 0, 0, 0, -1, -1], 1, (6, 2, 6))
    actions[:, :, 5] = 1.0  # push pitch into its clamp
    tracker = PoseTracker(KeyboardCamera(0.05, 2.0, 10.0, batch_size=2), frames_per_step=4)
    cams = [KeyboardCamera(0.05, 2.0, 10.0) for _ in range(2)]
    for a in actions:
        poses = tracker.advance(a)
        for r, cam in enumerate(cams):
            keys = torch.tensor([[float(k > 0.5) for k in a[r, :4]]])
            for f in range(4):
                cam.advance(keys, torch.tensor([a[r, 4]]), torch.tensor([a[r, 5]]))
                assert np.allclose(poses[r, f], cam.pose()[0].numpy(), atol=1e-5)
    assert np.allclose(tracker.yaw_pitch()[:, 1], 10.0)
    assert poses.dtype == np.float32 and tracker.pose().shape == (2, 4, 4)


def test_fit_image_scales_to_cover_then_center_crops():
    from PIL import Image

    wide = np.random.default_rng(1).integers(0, 256, (64, 192, 3), dtype=np.uint8)
    expect = np.asarray(Image.fromarray(wide).resize((96, 32), Image.BICUBIC))[:, 24:72]
    assert np.array_equal(fit_image(wide, 32, 48), expect)
    tall = wide.transpose(1, 0, 2).copy()  # 192 x 64 -> scale 0.75 -> 144 x 48, rows 56..88
    expect = np.asarray(Image.fromarray(tall).resize((48, 144), Image.BICUBIC))[56:88]
    assert np.array_equal(fit_image(tall, 32, 48), expect)
    same = fit_image(IMG[:32, :48], 32, 48)
    assert np.array_equal(same, IMG[:32, :48]) and not np.shares_memory(same, IMG)


def test_image_forms_numpy_pil_path_give_the_same_start(tmp_path):
    from PIL import Image

    path = tmp_path / "start.png"
    Image.fromarray(IMG).save(path)
    env = make_env()
    want = fit_image(IMG, 32, 48)
    for form in (IMG, Image.fromarray(IMG), str(path), path, Image.fromarray(IMG).convert("RGBA")):
        assert np.array_equal(env.reset(options={"image": form})[0], want)
    assert np.array_equal(prepare_image(path, 32, 48), want)


def test_positional_reset_equals_options():
    env = make_env()
    other = np.flipud(IMG).copy()
    obs1, info1 = env.reset(other, "a door", seed=4)
    frames1 = env.step(FORWARD_RIGHT)[0]
    obs2, info2 = env.reset(seed=4, options={"image": other, "prompt": "a door"})
    frames2 = env.step(FORWARD_RIGHT)[0]
    assert np.array_equal(obs1, obs2) and np.array_equal(frames1, frames2) and info2["prompt"] == "a door"
    with pytest.raises(ValueError, match="both positionally and in options"):
        env.reset(other, seed=4, options={"image": other})


def test_start_image_shipped_with_the_model_or_a_clear_error():
    world = tiny_world(1)
    env = LingBotWorldEnv(model=world)
    with pytest.raises(ValueError, match="no start image.*world.start_image"):
        env.reset()
    world.start_image = IMG  # what a model bundle provides
    obs, _ = env.reset()
    assert np.array_equal(obs, fit_image(IMG, 32, 48))


def test_truncation_and_time_limit():
    env = make_env(max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(FORWARD_RIGHT)[3] for _ in range(3)] == [False, False, True]
    wrapped = gym.make("LingBotWorld-v0", model=tiny_world, image=IMG, max_episode_steps=2)
    wrapped.reset(seed=0)
    assert [wrapped.step(FORWARD_RIGHT)[3] for _ in range(2)] == [False, True]


def test_reward_and_termination_callables_and_reset_hook():
    class Brightness:
        def __init__(self):
            self.resets = 0

        def reset(self, obs, info):
            self.resets += 1
            assert info["step"] == 0 and obs.shape == (32, 48, 3)

        def __call__(self, obs, action, info):
            assert np.array_equal(obs, info["frames"][-1]) and action.shape == (6,)
            return obs.mean() / 255

    reward_fn = Brightness()
    env = make_env(reward_fn=reward_fn, termination_fn=lambda obs, action, info: info["step"] >= 2)
    env.reset(seed=0)
    obs, reward, terminated, _, _ = env.step(FORWARD_RIGHT)
    assert reward == pytest.approx(obs.mean() / 255) and reward > 0 and not terminated
    assert env.step(FORWARD_RIGHT)[2] is True
    assert reward_fn.resets == 1


def test_out_of_range_actions_clip_with_warning_or_are_refused():
    env = make_env()
    env.reset(seed=0)
    with pytest.warns(ActionClippedWarning, match="clipped"):
        _, _, _, _, info = env.step([2.0, 0, 0, -1, 1.5, -3])
    assert np.array_equal(info["action"], [1, 0, 0, 0, 1, -1]) and info["action_clipped"]
    strict = make_env(action_clip="error")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match=r"out of range in \['W', 'yaw'\]"):
        strict.step([2.0, 0, 0, 0, 1.5, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_env(action_clip="clip").reset(seed=0)
        quiet = make_env(action_clip="clip")
        quiet.reset(seed=0)
        quiet.step([2.0, 0, 0, 0, 1.5, 0])


BAD_STEPS = [
    ([1, 0, 0, 0, 0], ValueError, r"shape \(6,\)"),
    (np.zeros((1, 6)), ValueError, r"shape \(6,\)"),
    ([1, 0, 0, 0, np.nan, 0], ValueError, r"NaN or inf in \['yaw'\]"),
    ([np.inf, 0, 0, 0, 0, -np.inf], ValueError, r"NaN or inf in \['W', 'pitch'\]"),
    ("forward", ValueError, "numeric"),
    ([1, 0, 0, 0, 2.0, 0], ValueError, r"out of range in \['yaw'\]"),
]
BAD_RESETS = [
    (dict(options={"image": IMG.astype(np.float32) / 255}), ValueError, "dtype uint8"),
    (dict(options={"image": IMG[..., 0]}), ValueError, "grayscale"),
    (dict(options={"image": np.zeros((32, 48, 4), np.uint8)}), ValueError, "RGBA"),
    (dict(options={"image": np.zeros((3, 32, 48), np.uint8)}), ValueError, "channels-first"),
    (dict(options={"image": np.zeros((2, 32, 48, 3), np.uint8)}), ValueError, r"\[H, W, 3\]"),
    (dict(options={"image": "/no/such/image.png"}), FileNotFoundError, "not found"),
    (dict(options={"image": 5}), TypeError, "did you mean reset"),
    (dict(options={"prompt": 42}), TypeError, "prompt must be a str"),
    (dict(options={"prompt": ["a", "b"]}), TypeError, "prompt must be a str"),
    (dict(options={"imgae": IMG}), ValueError, "unknown reset options"),
    (dict(options=[IMG]), TypeError, "options must be a dict"),
]


def test_bad_input_raises_clearly_and_leaves_the_episode_untouched():
    """Interleave every bad action and bad reset with good steps: the frames equal an undisturbed run."""
    actions = [FORWARD_RIGHT, np.array([0, 1, 0, 0, -0.5, 0.3], np.float32), FORWARD_RIGHT]
    reference = rollout(make_env(action_clip="error"), 5, actions)
    env = make_env(action_clip="error")
    with pytest.raises(RuntimeError, match=r"reset\(\) before step\(\)"):
        env.step(FORWARD_RIGHT)
    got = [env.reset(seed=5)[0]]
    for i, action in enumerate(actions):
        for bad, exc, match in BAD_STEPS:
            with pytest.raises(exc, match=match):
                env.step(bad)
        for kwargs, exc, match in BAD_RESETS[i::3]:
            with pytest.raises(exc, match=match):
                env.reset(**kwargs)
        got.append(env.step(action)[0])
    for x, y in zip(got, reference):
        assert np.array_equal(x, y)


def test_bad_constructor_arguments():
    for kwargs, exc, match in [
        (dict(render_mode="window"), ValueError, "render_mode"),
        (dict(action_clip="wrap"), ValueError, "action_clip"),
        (dict(max_episode_steps=0), ValueError, "max_episode_steps"),
        (dict(reward_fn=1.0), TypeError, "reward_fn must be callable"),
        (dict(model=3.5), TypeError, "model must be"),
        (dict(model=lambda: tiny_world(2)), ValueError, "batch_size=2"),
        (dict(model=lambda: "not a world"), TypeError, "not an InteractiveWorld"),
        (dict(model="factory:helpers:no_such_factory"), ValueError, "no callable"),
        (dict(model="helpers:tiny_world"), ValueError, "factory:helpers:tiny_world"),  # never imported unasked
        (dict(image=np.zeros((8, 8), np.uint8)), ValueError, "grayscale"),
    ]:
        with pytest.raises(exc, match=match):
            make_env(**kwargs)


def test_default_model_gives_a_clear_error_until_it_lands():
    try:
        env = LingBotWorldEnv(image=IMG)
    except (FileNotFoundError, ImportError) as e:
        assert "model" in str(e).lower()
    else:  # the default small model has landed
        assert env.reset(seed=0)[0].shape == env.observation_space.shape
        env.close()


def test_factory_string_and_close():
    env = make_env(model="factory:helpers:tiny_world")
    env.reset(seed=0)
    env.step(FORWARD_RIGHT)
    world = env.world
    env.close()
    env.close()  # idempotent
    assert env.world is None and not world.generator.primed  # owned: caches dropped
    with pytest.raises(RuntimeError, match="closed"):
        env.step(FORWARD_RIGHT)
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()
    mine = tiny_world(1)
    env = make_env(model=mine)
    env.reset(seed=0)
    env.close()
    assert mine.generator.primed  # the caller's world is left alone


def test_render_rgb_array():
    env = make_env(render_mode="rgb_array")
    assert env.render() is None
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs)
    obs = env.step(FORWARD_RIGHT)[0]
    frame = env.render()
    assert np.array_equal(frame, obs) and frame is not obs


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_500_steps_rolling_cache_constant_memory():
    import dataclasses

    from world_model.sampling import FewStepSchedule

    world = tiny_world(1, 16, 32)
    # One denoising pass instead of four: memory does not depend on it and the test runs 2.5x faster.
    gen = world.generator
    gen.config = dataclasses.replace(gen.config, schedule=FewStepSchedule((1000.0,)))
    env = make_env(model=world, timing_info=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    cache, decoder, rss, gen_ms = [world.generator.cache.nbytes], [world.decoder_stream.state.nbytes()], [], []
    for t in range(500):
        info = env.step(rng.uniform([0, 0, 0, 0, -1, -1], 1, 6))[4]
        cache.append(world.generator.cache.nbytes)
        decoder.append(world.decoder_stream.state.nbytes())
        gen_ms.append(info["generate_ms"])
        if t in (99, 499):
            rss.append(_rss_bytes())
    assert world.generator.cache.config.mode == "rolling" and world.generator.frames_generated[0] == 501
    assert len(set(cache)) == 1 and len(set(decoder)) == 1 and decoder[0] > 0
    assert rss[1] - rss[0] < 8 * 2**20, f"RSS grew by {(rss[1] - rss[0]) / 2**20:.1f} MiB over 400 steps"
    # Constant time per step, loosely (shared CI machines are noisy): the window is full after a few steps.
    assert np.median(gen_ms[-100:]) < 2.0 * np.median(gen_ms[20:120])


# ----------------------------------------------------------------------------------------- SB3 PPO
def test_ppo_cnn_policy_trains_in_the_tiny_world():
    from stable_baselines3 import PPO

    env = make_env(
        model=lambda: tiny_world(1, 48, 64),
        max_episode_steps=32,
        reward_fn=lambda obs, action, info: float(action[0] > 0.5),  # walk forward
    )
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(np.clip(action, env.action_space.low, env.action_space.high))
    assert np.isfinite(model.logger.name_to_value["train/value_loss"])


# ----------------------------------------------------------------------------------------- CLI
def test_action_scripts_json_csv_presets(tmp_path):
    from lingbot_env.__main__ import fit_length, load_action_script, parse_action_script, preset_actions

    script = [[1, 0, 0, 0, 0, 0], {"action": [0, 1, 0, 0, 0.5, 0], "repeat": 2}, {"keys": "wd", "yaw": -1, "repeat": 3}]
    acts = parse_action_script(script)
    assert acts.shape == (6, 6) and acts.dtype == np.float32
    assert acts[1].tolist() == acts[2].tolist() == [0, 1, 0, 0, 0.5, 0] and acts[5].tolist() == [1, 0, 0, 1, -1, 0]
    (tmp_path / "s.json").write_text(json.dumps({"actions": script}))
    assert np.array_equal(load_action_script(tmp_path / "s.json"), acts)
    (tmp_path / "s.csv").write_text(
        "W,A,S,D,yaw,pitch,repeat\n# comment\n1,0,0,0,0,0\n0,1,0,0,0.5,0,2\n1,0,0,1,-1,0,3\n"
    )
    assert np.array_equal(load_action_script(tmp_path / "s.csv"), acts)
    assert fit_length(acts, 14).shape == (14, 6) and np.array_equal(fit_length(acts, 14)[6], acts[0])
    assert preset_actions("tour").shape[0] == 40 and preset_actions("random", steps=10).shape == (10, 6)
    for bad, match in [
        ([], "non-empty"),
        ([[1, 0, 0]], "6 numbers"),
        ([{"keys": "WX"}], "letters"),
        ([{"keys": "W", "repeat": 0}], "repeat"),
        ([{"action": [0] * 6, "yaw": 1}], "either"),
        ([[0, 0, 0, 0, 3, 0]], "out of range"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_action_script(bad)
    with pytest.raises(ValueError, match="unknown action preset"):
        preset_actions("nope")


def test_cli_headless_replays_a_script_into_a_video(tmp_path, capsys):
    import imageio.v2 as imageio
    from PIL import Image

    from lingbot_env.__main__ import main

    ramp = np.linspace(0, 255, 48, dtype=np.float32)
    smooth = np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:32, None], (1, 48)), np.full((32, 48), 90.0)], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "start.png")
    script = tmp_path / "walk.json"
    script.write_text(json.dumps([{"keys": "W", "yaw": 0.5, "repeat": 2}, [0, 0, 0, 1, 0, 0]]))
    out = tmp_path / "walk.mp4"
    argv = ["--headless", "--model", "factory:helpers:tiny_world", "--image", str(tmp_path / "start.png")]
    assert main([*argv, "--actions", str(script), "--steps", "5", "--record", str(out), "--seed", "3"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 1 + 5 * 4 and frames[0].shape == (32, 48, 3)
    # The video starts with the start image (up to H.264 loss), the env's first observation.
    assert np.abs(frames[0].astype(int) - smooth.astype(int)).mean() < 8
    assert "5 steps, 20 frames" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--headless", "--model", "factory:helpers:tiny_world"])  # no actions
    with pytest.raises(SystemExit):
        main(["--env", "real", "--image", "x.png"])
    assert main(["--headless", "--actions-preset", "forward", "--model", "/no/such/model/folder"]) == 2


def test_loads_a_world_bundle_folder_with_its_start_image(tmp_path):
    from lingbot_env.vector_env import LingBotWorldVectorEnv
    from world_model.bundle import save_world

    folder = save_world(tmp_path / "bundle", tiny_world(1), start_image=IMG[:32, :48], dtype=torch.float32)
    env = gym.make("LingBotWorld-v0", model=str(folder), dtype="float32")
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, IMG[:32, :48])  # world.start_image from the bundle's start.png
    frames = [env.step(FORWARD_RIGHT)[0] for _ in range(2)]
    venv = LingBotWorldVectorEnv(2, model=folder)
    assert (venv.reset(seed=0)[0] == IMG[:32, :48]).all()
    batched = [venv.step(np.stack([FORWARD_RIGHT] * 2))[0][0] for _ in range(2)]
    for a, b in zip(frames, batched):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    env.close()
    venv.close()


# ----------------------------------------------------------------------------------------- same interface as the game
def test_same_interface_as_the_real_game():
    """LingBotWorld-v0 (the Doom world's architecture, random weights) and ViZDoomWASD-v0 take the same actions and
    return observations of the same dtype and [H, W, 3] layout; at the world's size, the same observation space."""
    pytest.importorskip("vizdoom")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        world = gym.make("LingBotWorld-v0", model="doom-untrained")
    game = gym.make("ViZDoomWASD-v0")
    try:
        assert world.action_space == game.action_space
        assert world.action_space.dtype == np.float32 and world.action_space.shape == (6,)
        for space in (world.observation_space, game.observation_space):
            assert space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3
            assert (space.low == 0).all() and (space.high == 255).all()
        # The same meaning of an action: turn rate, frames per step, key threshold; and the same video rate.
        w_spec, g_spec = world.unwrapped.action_spec, game.unwrapped.config.action_spec
        for name in ("max_yaw_deg_per_frame", "max_pitch_deg_per_frame", "frames_per_step", "key_threshold"):
            assert getattr(w_spec, name) == getattr(g_spec, name), name
        assert world.metadata["video_fps"] == game.metadata["render_fps"] == 17.5
        assert world.metadata["render_fps"] == 4  # render() frames per second: one per step of 4 frames
        h, w, _ = world.observation_space.shape
        sized = gym.make("ViZDoomWASD-v0", frame_size=(w, h), labels=False)
        try:
            assert sized.observation_space == world.observation_space
            obs, _ = sized.reset(seed=0)
            assert world.observation_space.contains(obs)
            assert world.action_space.contains(np.array([1, 0, 0, 1, -0.5, 0.25], np.float32))
        finally:
            sized.close()
    finally:
        world.close()
        game.close()
