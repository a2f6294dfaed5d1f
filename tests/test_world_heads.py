"""Step heads in the generated world: the bundle carries them, the env rewards and terminates with them (a user's
reward_fn overrides), and the vector env with heads equals N single envs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_world

from lingbot_env.rewards import LearnedExplore
from lingbot_env.vector_env import LingBotWorldVectorEnv
from lingbot_env.world_env import LingBotWorldEnv
from world_model.bundle import add_heads, load_world, save_world
from world_model.heads import StepHeads, StepHeadsConfig, end_head_trusted, load_heads, save_heads

IMG = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def make_heads(end_bias: float, terminates: bool = True) -> StepHeads:
    """Random heads that walk ~40 map units forward per step (a new 64-unit cell every other step or so)."""
    torch.manual_seed(0)
    heads = StepHeads(StepHeadsConfig(width=8, hidden=16, terminates=terminates))
    with torch.no_grad():
        heads.motion.weight.mul_(0.1)
        heads.motion.bias.copy_(torch.tensor([40.0 / 32, 5.0 / 32]))
        heads.end.weight.zero_()
        heads.end.bias.fill_(end_bias)
    return heads.eval()


def world_with_heads(batch_size: int = 1, end_bias: float = -5.0, terminates: bool = True):
    world = tiny_world(batch_size)
    world.heads = make_heads(end_bias, terminates)
    return world


def play(env, actions):
    out = [env.reset(seed=3)]
    out += [env.step(a) for a in actions]
    return out


ACTIONS = np.random.default_rng(1).uniform([0, 0, 0, 0, -1, -1], 1, (6, 6)).astype(np.float32)


def test_env_rewards_with_the_heads_and_a_reward_fn_overrides():
    env = LingBotWorldEnv(model=lambda: world_with_heads(), image=IMG)
    steps = play(env, ACTIONS)[1:]
    assert all(s[4]["reward_source"] == "heads" for s in steps)
    rewards = [s[1] for s in steps]
    assert sum(rewards) > 0 and not any(s[2] for s in steps)
    # The reward is the learned explore count along the path of the heads' motion (one definition).
    ref = LearnedExplore(1, 64.0, env.world.spec.control.turn_deg_per_frame, 4)
    expect = [float(ref.step(s[4]["motion"][None], a[None])[0]) for s, a in zip(steps, ACTIONS, strict=True)]
    assert rewards == expect
    env = LingBotWorldEnv(model=lambda: world_with_heads(), image=IMG, reward_fn=lambda o, a, i: 0.5)
    assert {s[1] for s in play(env, ACTIONS[:2])[1:]} == {0.5}


def test_env_without_heads_rewards_nothing_and_says_so():
    env = LingBotWorldEnv(model=tiny_world, image=IMG)
    _, r, term, _, info = play(env, ACTIONS[:1])[1]
    assert (r, term, info["reward_source"]) == (0.0, False, "none") and "motion" not in info


def test_heads_end_the_episode():
    env = LingBotWorldEnv(model=lambda: world_with_heads(end_bias=5.0), image=IMG)
    _, _, term, _, info = play(env, ACTIONS[:1])[1]
    assert term and info["end_logit"] > 0 and info["termination_source"] == "heads"


def test_an_untrusted_end_head_reports_but_never_ends_the_episode():
    env = LingBotWorldEnv(model=lambda: world_with_heads(end_bias=5.0, terminates=False), image=IMG)
    steps = play(env, ACTIONS[:3])[1:]
    assert not any(s[2] for s in steps) and all(s[4]["end_logit"] > 0 for s in steps)
    assert {s[4]["termination_source"] for s in steps} == {"none"} and sum(s[1] for s in steps) > 0
    venv = LingBotWorldVectorEnv(2, model=lambda batch_size: world_with_heads(batch_size, 5.0, False), image=IMG)
    venv.reset(seed=0)
    _, _, term, _, info = venv.step(ACTIONS[:2])
    assert not term.any() and info["termination_source"].tolist() == ["none", "none"]
    env = LingBotWorldEnv(
        model=lambda: world_with_heads(end_bias=-5.0, terminates=False), image=IMG, termination_fn=lambda o, a, i: True
    )
    _, _, term, _, info = play(env, ACTIONS[:1])[1]
    assert term and info["termination_source"] == "termination_fn"


def test_end_head_trust_rule():
    # 1 of 3 deaths found: not trusted whatever its false alarms; all found at 0.23% false alarms per step would
    # still end ~70% of 300-step episodes falsely: not trusted; at 0.02% (6% of episodes): trusted.
    assert not end_head_trusted(1 / 3, 0.0, 300)
    assert not end_head_trusted(1.0, 0.0023, 300)
    assert end_head_trusted(1.0, 0.0002, 300)


def test_vector_env_with_heads_equals_n_single_envs():
    n, limit = 3, 3
    venv = LingBotWorldVectorEnv(
        n, model=lambda batch_size: world_with_heads(batch_size), image=IMG, max_episode_steps=limit
    )
    venv.reset(seed=10)
    acts = np.random.default_rng(2).uniform([0, 0, 0, 0, -1, -1], 1, (7, n, 6)).astype(np.float32)
    got = [venv.step(a) for a in acts]
    assert got[0][4]["reward_source"].tolist() == ["heads"] * n
    for i in range(n):
        env = LingBotWorldEnv(model=lambda: world_with_heads(), image=IMG, max_episode_steps=limit)
        env.reset(seed=10 + i)
        for t, (obs, rew, term, trunc, info) in enumerate(got):
            if info["step"][i] == 0:  # the vector env restarted this env in this step
                env.reset()
                continue
            o, r, te, tr, _ = env.step(acts[t][i])
            assert np.abs(o.astype(int) - obs[i].astype(int)).max() <= 1, (i, t)
            assert (r, te, tr) == (rew[i], term[i], trunc[i]), (i, t)


def test_bundle_carries_heads_and_refuses_heads_of_other_latents(tmp_path):
    folder = save_world(tmp_path / "w", tiny_world(), start_image=IMG, notes={"vae_fingerprint": "aaaa"})
    save_heads(make_heads(-5.0), tmp_path / "h_other", "bbbb")
    with pytest.raises(ValueError, match="latents of VAE bbbb.*aaaa"):
        add_heads(folder, tmp_path / "h_other")
    save_heads(make_heads(-5.0), tmp_path / "h", "aaaa")
    add_heads(folder, tmp_path / "h")
    world = load_world(folder)
    assert isinstance(world.heads, StepHeads)
    meta = json.loads((folder / "world.json").read_text())
    del meta["sha256"]["heads.safetensors"]  # heads copied in by hand, not recorded: refused by name
    (folder / "world.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="heads.safetensors is not recorded"):
        load_world(folder)


def test_heads_keep_their_terminates_flag_and_old_heads_still_terminate(tmp_path):
    save_heads(make_heads(-5.0, terminates=False), tmp_path / "h", "aaaa")
    assert load_heads(tmp_path / "h", "aaaa").cfg.terminates is False
    meta = json.loads((tmp_path / "h" / "heads.json").read_text())
    del meta["config"]["terminates"]  # heads written before the flag existed
    (tmp_path / "h" / "heads.json").write_text(json.dumps(meta))
    assert load_heads(tmp_path / "h", "aaaa").cfg.terminates is True


def test_the_default_world_pays_its_heads_reward_and_does_not_end_on_its_untrusted_end_head():
    env = LingBotWorldEnv()  # the shipped bundle: heads trained on real game data, end head not trusted
    env.reset(seed=0)
    _, reward, term, _, info = env.step(np.array([1, 0, 0, 0, 0, 0], np.float32))
    assert info["reward_source"] == "heads" and info["termination_source"] == "none" and not term
    assert np.isfinite(info["end_logit"]) and reward >= 0
    assert env.world.heads.cfg.terminates is False
    env.close()
