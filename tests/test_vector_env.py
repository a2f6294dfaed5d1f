"""The batched LingBotWorld-v0 vector env: equals N single envs, next-step autoreset, per-env seeds, SB3 adapter."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from helpers import tiny_world

import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
from lingbot_env.images import fit_image
from lingbot_env.vector_env import LingBotWorldVectorEnv
from lingbot_env.world_env import LingBotWorldEnv
from lingbot_env.wrappers import DISCRETE_ACTION_NAMES, DiscreteActions, KeysAndMouse, SB3VecEnv

IMG = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)
IMG2 = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
START, START2 = fit_image(IMG, 32, 48), fit_image(IMG2, 32, 48)


def random_actions(n: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform([0, 0, 0, 0, -1, -1], 1, (steps, n, 6)).astype(np.float32)


def test_make_vec_returns_the_batched_env():
    env = gym.make_vec(
        "LingBotWorld-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        model=tiny_world,
        image=IMG,
        timing_info=True,
    )
    assert isinstance(env, LingBotWorldVectorEnv) and env.world.batch_size == 3
    assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert env.observation_space.shape == (3, 32, 48, 3) and env.action_space.shape == (3, 6)
    assert env.single_observation_space.shape == (32, 48, 3) and env.single_action_space.shape == (6,)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 32, 48, 3) and (obs == START).all()
    assert info["frames"].shape == (3, 1, 32, 48, 3) and info["_seed"].all() and info["prompt"].tolist() == [""] * 3
    obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (3, 32, 48, 3) and rewards.shape == terminated.shape == truncated.shape == (3,)
    assert info["frames"].shape == (3, 4, 32, 48, 3) and np.array_equal(info["frames"][:, -1], obs)
    assert info["pose"].shape == (3, 4, 4) and info["poses"].shape == (3, 4, 4, 4) and info["step"].tolist() == [1] * 3
    assert all(info[f"_{k}"].all() for k in ("frames", "pose", "step", "step_ms", "generate_ms", "decode_ms"))
    assert "seed" not in info  # no env restarted in this step
    env.close()
    env.close()
    assert env.world is None


def test_vector_env_equals_n_single_envs_through_staggered_autoresets():
    """Per-env seeds, per-row restarts (reset_mask and next-step autoreset) and batched stepping: every env
    matches a single env driven with the same seed and actions (frames within 1 uint8 level)."""
    n, steps, limit = 3, 9, 3
    actions = random_actions(n, steps)
    images, prompts = [IMG, IMG2, IMG], ["a", "b", "c"]
    venv = LingBotWorldVectorEnv(n, model=tiny_world, image=images, prompt=prompts, max_episode_steps=limit)
    obs, _ = venv.reset(seed=10)
    log = [[("reset", None, obs[i])] for i in range(n)]  # per env: (what happened, action, observation)
    for t in range(steps):
        if t == 1:  # stagger: env 1 restarts now, the others go on
            obs, info = venv.reset(options={"reset_mask": np.array([False, True, False])})
            assert info["_seed"].tolist() == [False, True, False] and info["step"][1] == 0
            assert np.array_equal(obs[0], log[0][-1][2])  # untouched envs keep their observation
            log[1].append(("reset", None, obs[1]))
        obs, _, _, _, info = venv.step(actions[t])
        for i in range(n):
            log[i].append(("reset", None, obs[i]) if info["step"][i] == 0 else ("step", actions[t][i], obs[i]))
    final_pose = info["pose"]
    # Env 1 ends a step later than the others, so the envs restart in different batched calls.
    assert [k for k, _, _ in log[0]] == ["reset", "step", "step", "step"] * 2 + ["reset", "step"]
    assert [k for k, _, _ in log[1]][:7] == ["reset", "step", "reset", "step", "step", "step", "reset"]

    for i in range(n):
        env = LingBotWorldEnv(model=tiny_world, image=images[i], prompt=prompts[i], max_episode_steps=limit)
        replay = [env.reset(seed=10 + i)[0]]
        for kind, action, _ in log[i][1:]:
            out = env.reset() if kind == "reset" else env.step(action)
            replay.append(out[0])
        assert np.allclose(out[-1]["pose"], final_pose[i], atol=1e-6)  # the integrated camera pose too
        for k, ((_, _, a), b) in enumerate(zip(log[i], replay)):
            diff = np.abs(a.astype(int) - b.astype(int)).max()
            assert diff <= 1, f"env {i}, observation {k}: differs by {diff}"


def test_one_model_call_per_vector_step():
    """All N worlds step in one ``InteractiveWorld.step`` call on the whole batch; rows that restart share one
    ``reset`` call; a step in which every env restarts (next-step autoreset) runs no model step at all."""
    n = 3
    venv = LingBotWorldVectorEnv(n, model=tiny_world, image=[IMG, IMG2, IMG], max_episode_steps=2)
    world = venv.world
    calls = {"step": [], "reset": []}
    step, reset = world.step, world.reset

    def counted_step(actions):
        calls["step"].append(tuple(actions.shape))
        return step(actions)

    def counted_reset(images, prompts, seeds=None, rows=None):
        calls["reset"].append(len(prompts))
        return reset(images, prompts, seeds=seeds, rows=rows)

    world.step, world.reset = counted_step, counted_reset
    venv.reset(seed=0)
    assert calls == {"step": [], "reset": [n]}
    actions = random_actions(n, 11)
    for t in range(11):
        if t == 1:  # stagger env 2 by one step, so later steps mix stepping and restarting rows
            venv.reset(options={"reset_mask": np.array([False, False, True])})
        if t == 8:  # back in step: two steps later all envs truncate together, and then all restart
            venv.reset()
        before = {k: len(v) for k, v in calls.items()}
        info = venv.step(actions[t])[4]
        stepped, restarted = info["step"] > 0, info["step"] == 0
        assert len(calls["step"]) - before["step"] == int(stepped.any()), f"step {t}"
        assert len(calls["reset"]) - before["reset"] == int(restarted.any()), f"step {t}"
        if stepped.any():
            assert calls["step"][-1] == (n, 6)  # every row in the one call, restarting rows with a zero action
        if restarted.any():
            assert calls["reset"][-1] == restarted.sum()
    # 10 of the 11 steps had rows going (the last one only restarted rows); resets: 1 + mask + 4 mixed
    # autoresets (steps 2, 3, 5, 6) + the reset at step 8 + the all-rows autoreset of step 10.
    assert len(calls["step"]) == 10 and calls["reset"] == [3, 1, 2, 1, 2, 1, 3, 3]
    venv.close()


def test_next_step_autoreset_semantics():
    venv = LingBotWorldVectorEnv(2, model=tiny_world, image=[IMG, IMG2], max_episode_steps=2)
    venv.reset(seed=0)
    go = np.tile([1, 0, 0, 0, 0.5, 0], (2, 1)).astype(np.float32)
    venv.step(go)
    venv.reset(options={"reset_mask": np.array([True, False])})  # env 0 one step behind env 1
    obs, rewards, terminated, truncated, info = venv.step(go)
    assert truncated.tolist() == [False, True] and info["step"].tolist() == [1, 2]
    last1 = obs[1]
    # The next step resets env 1: its obs is the new start image, reward 0, not done; env 0 steps and truncates.
    obs, rewards, terminated, truncated, info = venv.step(go)
    assert np.array_equal(obs[1], START2) and not np.array_equal(obs[1], last1)
    assert rewards[1] == 0 and not terminated[1] and not truncated[1] and info["step"][1] == 0
    assert info["_seed"].tolist() == [False, True] and np.array_equal(info["pose"][1], np.eye(4))
    assert (info["frames"][1] == START2).all()
    assert truncated[0] and info["step"][0] == 2
    # ... and env 1's new episode goes on from there while env 0 restarts.
    obs, _, _, truncated, info = venv.step(go)
    assert info["step"].tolist() == [0, 1] and np.array_equal(obs[0], START) and not truncated.any()


def test_per_env_seeds_and_options():
    venv = LingBotWorldVectorEnv(2, model=tiny_world, image=IMG)
    same = np.tile([1, 0, 0, 0, 0, 0], (2, 1)).astype(np.float32)
    venv.reset(seed=[5, 5])
    obs = venv.step(same)[0]
    assert np.array_equal(obs[0], obs[1])  # same seed, image and actions: same world, whatever the row
    venv.reset(seed=[5, 6])
    obs = venv.step(same)[0]
    assert not np.array_equal(obs[0], obs[1])
    obs, info = venv.reset(seed=5, options={"image": [IMG2, IMG], "prompt": "x"})
    assert np.array_equal(obs[0], START2) and np.array_equal(obs[1], START) and info["prompt"].tolist() == ["x", "x"]
    assert info["seed"][0] == LingBotWorldVectorEnv(1, model=tiny_world, image=IMG).reset(seed=5)[1]["seed"][0]


def test_bad_input_raises_and_leaves_the_vector_env_usable():
    venv = LingBotWorldVectorEnv(2, model=tiny_world, image=IMG, action_clip="error")
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((2, 6), np.float32))
    with pytest.raises(RuntimeError, match="reset all envs once"):
        venv.reset(options={"reset_mask": np.array([True, False])})
    actions = random_actions(2, 2)
    ref = LingBotWorldVectorEnv(2, model=tiny_world, image=IMG)
    ref.reset(seed=3)
    want = [ref.step(a)[0] for a in actions]
    venv.reset(seed=3)
    for t in range(2):
        for bad, match in [
            (np.zeros((3, 6)), r"shape \(2, 6\)"),
            (np.zeros(6), r"shape \(2, 6\)"),
            (np.array([[0, 0, 0, 0, np.nan, 0], [0] * 6]), "NaN"),
            (np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 5, 0]]), r"out of range in \['yaw'\]"),
        ]:
            with pytest.raises(ValueError, match=match):
                venv.step(bad)
        for options, exc, match in [
            ({"image": [IMG]}, ValueError, "1 values for 2 envs"),
            ({"image": IMG.astype(np.float64)}, ValueError, "dtype uint8"),
            ({"prompt": ["a", 3]}, TypeError, "prompt of env 1 must be a str"),
            ({"reset_mask": np.array([1, 0])}, ValueError, "bool array"),
            ({"reset_mask": np.zeros(2, bool)}, ValueError, "selects no env"),
        ]:
            with pytest.raises(exc, match=match):
                venv.reset(options=options)
        assert np.array_equal(venv.step(actions[t])[0], want[t])
    with pytest.raises(ValueError, match="batch_size=1"):
        LingBotWorldVectorEnv(2, model=tiny_world(1))


def test_single_row_restart_refused_clearly_for_the_fast_layout():
    import dataclasses

    world = tiny_world(2, block_frames=2)
    # LingBot Fast's layout: the image is generated with the first chunk, so one row cannot restart alone.
    stream = dataclasses.replace(world.spec.stream, first_block_frames=world.spec.stream.block_frames)
    world.spec = dataclasses.replace(world.spec, stream=stream)
    world.generator.config = stream
    venv = LingBotWorldVectorEnv(2, model=world, image=IMG, termination_fn=lambda o, a, i: a[0] > 0.5)
    venv.reset(seed=0)
    _, _, terminated, _, _ = venv.step(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32))
    assert terminated.tolist() == [True, False]
    with pytest.raises(ValueError, match="cannot restart single worlds"):
        venv.step(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="cannot restart single worlds"):
        venv.reset(options={"reset_mask": np.array([False, True])})
    obs, _ = venv.reset()  # the way out: restart all
    assert (obs == START).all() and venv.step(np.zeros((2, 6), np.float32))[4]["step"].tolist() == [1, 1]


def test_batched_reward_hook_and_per_env_fallback():
    class Head:
        calls = 0

        def __call__(self, obs, action, info):  # pragma: no cover - the batched path must be used
            raise AssertionError("per-env call while a batch method exists")

        def batch(self, obs, actions, info):
            Head.calls += 1
            assert obs.shape[1:] == (32, 48, 3) and info["frames"].shape[0] == len(obs)
            return actions[:, 0] * 2.0

    venv = LingBotWorldVectorEnv(
        2, model=tiny_world, image=IMG, reward_fn=Head(), termination_fn=lambda o, a, i: a[1] > 0.5
    )
    venv.reset(seed=0)
    _, rewards, terminated, _, _ = venv.step(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32))
    assert rewards.tolist() == [2.0, 0.0] and terminated.tolist() == [True, False] and Head.calls == 1
    _, rewards, terminated, _, _ = venv.step(np.ones((2, 6), np.float32))
    assert rewards.tolist() == [0.0, 2.0] and terminated.tolist() == [False, True]  # env 0 was being reset


def test_action_wrappers_map_to_the_box():
    env = DiscreteActions(LingBotWorldEnv(model=tiny_world, image=IMG))
    assert env.action_space.n == len(DISCRETE_ACTION_NAMES) == 11
    table = {name: env.action(i).tolist() for i, name in enumerate(env.names)}
    assert table["noop"] == [0] * 6 and table["forward"] == [1, 0, 0, 0, 0, 0]
    assert table["strafe_left"] == [0, 1, 0, 0, 0, 0] and table["back"] == [0, 0, 1, 0, 0, 0]
    assert table["forward_right"] == [1, 0, 0, 0, 1, 0] and table["turn_left"] == [0, 0, 0, 0, -1, 0]
    assert table["look_up"] == [0, 0, 0, 0, 0, 1] and table["look_down"] == [0, 0, 0, 0, 0, -1]
    env.reset(seed=0)
    assert env.step(np.int64(8))[4]["action"].tolist() == [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match=r"in \[0, 11\)"):
        env.step(11)
    custom = DiscreteActions(
        LingBotWorldEnv(model=tiny_world, image=IMG), actions={"run": [1, 0, 0, 0, 0, 0], "spin": [0, 0, 0, 0, 0.5, 0]}
    )
    assert custom.names == ("run", "spin") and custom.action(1).tolist() == [0, 0, 0, 0, 0.5, 0]

    km = KeysAndMouse(LingBotWorldEnv(model=tiny_world, image=IMG))
    assert set(km.action_space.spaces) == {"keys", "mouse"}
    assert km.action({"keys": np.array([1, 0, 0, 1]), "mouse": np.array([0.25, -2.0])}).tolist() == [
        1,
        0,
        0,
        1,
        0.25,
        -1,
    ]
    assert km.action(([0, 1, 0, 0], [0, 0.5])).tolist() == [0, 1, 0, 0, 0, 0.5]
    km.reset(seed=0)
    assert km.step(km.action_space.sample())[0].shape == (32, 48, 3)
    with pytest.raises(ValueError, match="shape"):
        km.action({"keys": [1, 0], "mouse": [0, 0]})
    with pytest.raises(TypeError, match="KeysAndMouse|keys"):
        km.action(np.zeros(6))


def test_sb3_adapter_resets_done_envs_at_once():
    venv = SB3VecEnv(LingBotWorldVectorEnv(2, model=tiny_world, image=[IMG, IMG2], max_episode_steps=2))
    venv.seed(4)
    obs = venv.reset()
    assert obs.shape == (2, 32, 48, 3) and np.array_equal(obs[1], START2)
    venv.step(np.zeros((2, 6), np.float32))
    obs, rewards, dones, infos = venv.step(np.zeros((2, 6), np.float32))
    assert dones.tolist() == [True, True] and rewards.dtype == np.float32
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert not np.array_equal(infos[0]["terminal_observation"], START) and np.array_equal(obs[0], START)
    assert "frames" not in infos[0] and infos[0]["step"] == 2
    obs, _, dones, infos = venv.step(np.zeros((2, 6), np.float32))  # a normal step of the new episodes
    assert not dones.any() and infos[0]["step"] == 1
    venv.close()


def test_ppo_on_the_batched_world():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    vector = gym.make_vec(
        "LingBotWorld-v0",
        num_envs=4,
        vectorization_mode="vector_entry_point",
        model=lambda batch_size: tiny_world(batch_size, 48, 64),  # >= 36 px for NatureCNN
        image=[IMG, IMG2, IMG, IMG2],
        max_episode_steps=16,
        reward_fn=lambda obs, action, info: float(obs.mean() / 255),
    )
    env = VecMonitor(SB3VecEnv(vector))
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) == 4 * 256 // 4 // 16  # every env finished 256 / 4 / 16 episodes
    assert all(info["l"] == 16 for info in model.ep_info_buffer)
