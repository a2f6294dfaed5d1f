"""LingBotWorld-v0 paths the main env tests do not cover: a camera-control (cam) world, a LingBot release root
loaded by folder, the memory that ``close()`` frees, and the error for the not-yet-shipped default model."""

from __future__ import annotations

import dataclasses
import gc
import re
import weakref

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_dit, tiny_world

import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
from lingbot_env.world_env import LingBotWorldEnv
from world_model.control import ActionControlConfig
from world_model.world import InteractiveWorld

IMG = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)


def tiny_cam_world(batch_size: int = 1, seed: int = 0) -> InteractiveWorld:
    """:func:`tiny_world` with LingBot's cam control: a 6-channel camera-control DiT (ray origin + direction)."""
    base = tiny_world(batch_size, seed=seed)
    spec = dataclasses.replace(base.spec, control=ActionControlConfig("cam", 32, 48))
    dit = tiny_dit(6, seed=seed, text_dim=32, text_len=16)
    return InteractiveWorld(dit, base.encoder, base.decoder, base.text_encoder, spec, batch_size, seed)


# ----------------------------------------------------------------------------------------- cam control
def test_cam_world_through_the_env_moves_the_pose_as_the_keys_say():
    env = LingBotWorldEnv(model=tiny_cam_world, image=IMG)
    world = env.world
    assert world.control.channels == 6 and world.dit.cfg.control_dim == 6
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 48, 3) and np.array_equal(info["pose"], np.eye(4))
    step = 0.05 * 4  # cam_step per video frame x 4 frames per step

    def pose_after(action):
        obs, _, _, _, info = env.step(np.array(action, np.float32))
        assert info["frames"].shape == (4, 32, 48, 3) and np.array_equal(info["frames"][-1], obs)
        assert info["poses"].shape == (4, 4, 4) and np.array_equal(info["poses"][-1], info["pose"])
        # The env's integrated pose is the camera the model's cam control was built from (official mapping).
        assert np.allclose(info["pose"], world.control.camera.pose([0])[0].numpy(), atol=1e-5)
        return info["pose"].astype(np.float64), obs

    pose, obs_w = pose_after([1, 0, 0, 0, 0, 0])  # W: forward = +z (OpenCV camera axes), no turn
    assert np.allclose(pose[:3, 3], [0, 0, step], atol=1e-6) and np.allclose(pose[:3, :3], np.eye(3), atol=1e-6)
    pose, _ = pose_after([0, 0, 0, 1, 0, 0])  # D: strafe right = +x
    assert np.allclose(pose[:3, 3], [step, 0, step], atol=1e-6)
    pose, _ = pose_after([0, 0, 0, 0, 1, 0])  # yaw right 2 deg x 4 frames, in place
    assert np.allclose(pose[:3, 3], [step, 0, step], atol=1e-6)
    yaw = np.deg2rad(8.0)
    assert np.allclose(pose[:3, 2], [np.sin(yaw), 0, np.cos(yaw)], atol=1e-6)  # looks right of +z
    pose, _ = pose_after([1, 0, 0, 0, 0, 0])  # W now walks along the turned view direction
    assert np.allclose(pose[:3, 3], [step + step * np.sin(yaw), 0, step + step * np.cos(yaw)], atol=1e-6)
    pose, _ = pose_after([0, 0, 1, 0, 0, -1])  # S backwards while looking down: pitch -8 deg, still on the ground
    assert np.isclose(pose[1, 3], 0.0) and np.allclose(env.unwrapped._poses.yaw_pitch()[0], [8.0, -8.0])
    assert np.allclose(pose[:3, 3], [step, 0, step], atol=1e-6)

    # The control reaches the DiT: from the same seed, S instead of W gives different frames.
    env.reset(seed=0)
    _, obs_s = pose_after([0, 0, 1, 0, 0, 0])
    assert not np.array_equal(obs_w, obs_s)
    env.reset(seed=0)
    assert np.array_equal(pose_after([1, 0, 0, 0, 0, 0])[1], obs_w)  # and W again is deterministic
    env.close()


# ----------------------------------------------------------------------------------------- release root
@pytest.fixture
def fast_release(tmp_path):
    """A tiny LingBot-World Fast release root as downloaded: ``lingbot_world_fast/`` (official Fast shard names),
    ``Wan2.1_VAE.pth``, umT5 ``.pth`` + tokenizer, and the tiny preset of its shape (same stream layout as Fast)."""
    pytest.importorskip("transformers")
    from test_checkpoints_release import T5, write_vae_and_text_encoder

    from world_model.checkpoints import ExpertSpec, Preset, get_preset, save_model
    from world_model.checkpoints.text_encoders import umt5_config

    fast = get_preset("lingbot-world-fast")
    cfg = tiny_dit(6, text_dim=4096).cfg
    preset = Preset(
        "test-tiny-lingbot-fast",
        (ExpertSpec("model", cfg, "lingbot_world_fast"),),
        fast.sampling,  # few-step schedule + stream layout (3-frame chunks, image generated with the first)
        sizes=((32, 48),),
        fps=16,
        causal=True,
        files=dict(fast.files),
    )
    dit = tiny_dit(6, seed=3, text_dim=4096)
    save_model(dit, tmp_path, preset, num_shards=2, dtype=torch.float32)
    write_vae_and_text_encoder(tmp_path)
    te_kwargs = {"config": umt5_config(**T5), "dtype": torch.float32}
    return tmp_path, preset, dit, te_kwargs


def test_release_root_runs_through_the_env(fast_release):
    root, preset, dit, te_kwargs = fast_release
    assert sorted(p.name for p in (root / "lingbot_world_fast").iterdir()) == [  # the official Fast names
        "SHA256SUMS",  # the digests this project records beside the shards it writes
        "config.json",
        "diffusion_pytorch_model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    env = gym.make(
        "LingBotWorld-v0",
        model=str(root),
        dtype="float32",
        image=IMG,
        prompt="the red door opens",
        model_kwargs={"release_preset": preset, "text_encoder_kwargs": te_kwargs},
    )
    world = env.unwrapped.world
    assert world.notes == {"preset": preset.name} and world.start_image is None
    assert world.spec.stream.first_block_frames == world.spec.stream.block_frames == 3
    assert world.spec.control.kind == "cam" and world.decoder is world.encoder  # the full Wan VAE decodes
    assert all(torch.equal(a, b) for a, b in zip(dit.state_dict().values(), world.dit.state_dict().values()))
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 48, 3) and info["prompt"] == "the red door opens"
    obs, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0.5, 0], np.float32))
    # Fast's first chunk: 3 latent frames, frame 0 is the start image (shown at reset) -> 8 new video frames.
    assert info["frames"].shape == (8, 32, 48, 3) and np.array_equal(info["frames"][-1], obs)
    assert info["yaw_pitch"][0] > 0 and info["pose"][2, 3] > 0  # turned right, walked forward
    # The camera moved over those 8 frames only: the regenerated image frame keeps the start pose.
    assert np.isclose(info["yaw_pitch"][0], 8 * 0.5 * world.spec.control.turn_deg_per_frame)
    assert np.allclose(info["pose"], world.control.camera.pose([0])[0].numpy(), atol=1e-5)
    obs, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0, 0], np.float32))
    assert info["frames"].shape == (12, 32, 48, 3) and info["step"] == 2
    assert np.allclose(info["pose"], world.control.camera.pose([0])[0].numpy(), atol=1e-5)
    env.close()


def test_release_options_are_refused_for_other_models():
    from world_model.bundle import _load_release, load_world

    with pytest.raises(ValueError, match=r"\['release_preset'\] apply to a LingBot-World release root only"):
        load_world(tiny_world, release_preset="lingbot-world-fast")
    with pytest.raises(ValueError, match="not a causal streaming student"):  # the Base experts are bidirectional
        _load_release(None, "cpu", None, 1, 0, None, "lingbot-world-base-cam")


# ----------------------------------------------------------------------------------------- close() frees the model
def test_close_frees_the_model():
    env = LingBotWorldEnv(model=tiny_world, image=IMG)
    env.reset(seed=0)
    env.step(np.array([1, 0, 0, 0, 0.5, 0], np.float32))
    dit, world = weakref.ref(env.world.dit), weakref.ref(env.world)
    cache = weakref.ref(env.world.generator.cache)
    env.close()
    gc.collect()
    assert dit() is None and world() is None and cache() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_close_returns_cuda_memory():
    def cuda_world():
        w = tiny_world()
        parts = [m.to("cuda") for m in (w.dit, w.encoder, w.decoder, w.text_encoder)]
        return InteractiveWorld(*parts, w.spec, batch_size=1, seed=0)

    def run_and_close() -> weakref.ref:
        env = LingBotWorldEnv(model=cuda_world, device="cuda", image=IMG)
        env.reset(seed=0)
        env.step(np.array([1, 0, 0, 0, 0.5, 0], np.float32))
        assert torch.cuda.memory_allocated() > start
        dit = weakref.ref(env.world.dit)
        env.close()
        gc.collect()
        torch.cuda.synchronize()
        return dit

    # A first run lets CUDA's once-per-process allocations (cuBLAS workspaces, kernels' buffers) happen.
    start = torch.cuda.memory_allocated()
    run_and_close()
    start = torch.cuda.memory_allocated()
    dit = run_and_close()
    assert dit() is None and torch.cuda.memory_allocated() == start


# ----------------------------------------------------------------------------------------- the default model
def test_default_model_raises_until_it_ships(monkeypatch, tmp_path):
    """``model=None`` is the project's small Doom model; while no bundle is shipped the env refuses with a
    :class:`WorldNotAvailableError` (a ``FileNotFoundError``) saying so: no silent fallback to random weights."""
    import world_model.bundle as bundle

    missing = tmp_path / "assets" / "doom"  # the state of a checkout before the trained model lands
    monkeypatch.setattr(bundle, "DEFAULT_BUNDLE", missing)
    message = re.escape(
        "the embedded default world (the project's small ViZDoom model) is not trained and shipped yet: "
        f"nothing at {missing}. Pass model='doom-untrained' (its architecture with random weights: runs offline, "
        "shows noise), model=<bundle folder> or model=<LingBot-World release root>"
    )
    assert issubclass(bundle.WorldNotAvailableError, FileNotFoundError)
    with pytest.raises(bundle.WorldNotAvailableError, match=f"^{message}$"):
        LingBotWorldEnv()
    with pytest.raises(bundle.WorldNotAvailableError, match=f"^{message}$"):
        gym.make("LingBotWorld-v0")
    with pytest.raises(bundle.WorldNotAvailableError, match=f"^{message}$"):
        gym.make_vec("LingBotWorld-v0", num_envs=2, vectorization_mode="vector_entry_point")


def test_default_model_state_of_this_checkout():
    """Without the monkeypatch: as long as this checkout ships no default bundle, the plain calls raise."""
    from world_model.bundle import DEFAULT_BUNDLE, WorldNotAvailableError

    if (DEFAULT_BUNDLE / "world.json").exists():
        pytest.skip("the default small model has shipped: test_world_env covers loading it")
    for make in (LingBotWorldEnv, lambda: gym.make("LingBotWorld-v0")):
        with pytest.raises(WorldNotAvailableError, match=r"is not trained and shipped yet: nothing at .*doom"):
            make()
