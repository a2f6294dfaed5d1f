"""The world's step heads: they learn from labelled rows, round-trip through their files, refuse other latents,
and the labels they learn are the game's own (motion from its poses, return as the game counts it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import train_heads
from agents.task import ExploreTask
from lingbot_env import rewards
from world_model.heads import StepHeads, StepHeadsConfig, load_heads, save_heads

TINY = StepHeadsConfig(width=8, hidden=16)


def fixed_batch(n: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prev, cur = torch.randn(n, 16, 12, 16, generator=g), torch.randn(n, 16, 12, 16, generator=g)
    act = torch.rand(n, 6, generator=g)
    motion = torch.stack([(cur - prev).mean((1, 2, 3)) * 40, act[:, 0] * 20], 1)  # learnable from the inputs
    ended = (act[:, 1] > 0.8).float()
    return prev, cur, act, motion, ended


def test_heads_lower_their_losses_on_a_fixed_batch():
    torch.manual_seed(0)
    heads = StepHeads(TINY)
    opt = torch.optim.Adam(heads.parameters(), lr=3e-3)
    batch = fixed_batch()
    first = {k: float(v) for k, v in heads.losses(*batch).items()}
    for _ in range(150):
        loss = heads.losses(*batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = {k: float(v) for k, v in heads.losses(*batch).items()}
    assert last["motion"] < 0.5 * first["motion"] and last["end"] < 0.5 * first["end"]


def test_heads_round_trip_and_refuse_other_latents(tmp_path):
    heads = StepHeads(TINY).to(torch.bfloat16).float().eval()  # the file holds bf16: compare at that precision
    save_heads(heads, tmp_path, "abcd", {"motion_mae": 1.0})
    back = load_heads(tmp_path, "abcd")
    batch = fixed_batch(4)[:3]
    for a, b in zip(heads(*batch), back(*batch), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="latents of VAE abcd.*ffff"):
        load_heads(tmp_path, "ffff")


def test_played_episodes_label_the_deaths_the_game_reports():
    """A death mid-step leaves the last frame's health above 0: the label comes from the game (these seeds die
    within 60 steps, labelled alive by the health test this replaced)."""
    pytest.importorskip("vizdoom")
    from agents.task import ExploreTask
    from agents.train_heads import play_episode

    task = ExploreTask(episode_steps=60)
    died = play_episode((task, "train", 10003, 0.0))
    lived = play_episode((task, "train", 10000, 0.0))
    assert bool(died["died"]) and len(died["actions"]) < 60
    assert not bool(lived["died"]) and len(lived["actions"]) == 60


def test_motion_labels_invert_to_the_path():
    rng = np.random.default_rng(0)
    n = 12
    poses = np.zeros((1 + 4 * n, 5), np.float32)
    poses[:, :2] = np.cumsum(rng.normal(0, 5, (1 + 4 * n, 2)), 0)
    poses[:, 3] = np.repeat(rng.uniform(0, 360, n + 1), 4)[: 1 + 4 * n]
    motion = rewards.step_motion(poses)
    back = rewards.integrate(poses[0, :2], poses[:-1:4, 3], motion)
    np.testing.assert_allclose(back[4::4], poses[4::4, :2], atol=1e-3)  # step ends land where the game was


def test_explore_return_counts_as_the_game_does():
    """The return of the engine's own path equals the sum of the real env's explore rewards over the episode."""
    task = ExploreTask(episode_steps=30)
    env = task.real_env("train", seed=3)
    obs, info = env.reset(seed=3)
    poses, total = [info["pose"]], 0.0
    policy = train_heads.StickyRandom(3, env.action_space)
    done = False
    while not done:
        obs, r, term, trunc, info = env.step(policy(obs, info))
        total += r
        poses.extend(info["poses"])
        done = term or trunc
    env.close()
    assert total > 0
    assert rewards.explore_return(np.stack(poses)[:, :2], task.explore_cell) == total


def test_dream_score_replays_each_episode_for_its_own_length():
    """The heads scored in a world's replay of real episodes: every episode counts its own steps only."""
    from helpers import tiny_world

    rng = np.random.default_rng(0)
    episodes = []
    for n in (3, 5):
        poses = np.zeros((1 + 4 * n, 5), np.float32)
        poses[:, 0] = np.arange(1 + 4 * n) * 20.0  # walks east: a new 64-unit cell every ~3 frames
        episodes.append({
            "first": rng.integers(0, 256, (32, 48, 3), dtype=np.uint8),
            "actions": np.tile(np.array([1, 0, 0, 0, 0, 0], np.float32), (n, 1)),
            "poses": poses, "died": np.array(False),
        })  # fmt: skip
    task = ExploreTask(episode_steps=5)
    res = train_heads.score_in_dream(StepHeads(TINY), tiny_world(2), episodes, task, "cpu")
    assert res["steps"] == [3, 5] and res["episodes"] == 2
    assert res["return_game_mean"] == pytest.approx(
        np.mean([rewards.explore_return(e["poses"][:, :2], 64.0) for e in episodes])
    )


def test_trainer_end_to_end_keeps_an_untrusted_end_head_from_ending_episodes(tmp_path):
    """Real game episodes, a tiny VAE, a few training steps: the heads and report are written, and an end head
    that found no held-out death (recall 0) is saved with ``terminates`` off, unless told otherwise."""
    pytest.importorskip("vizdoom")
    import json

    from helpers import tiny_vae_export

    vae = str(tiny_vae_export(tmp_path / "vae"))
    args = ["--vae", vae, "--train-episodes", "2", "--val-episodes", "1", "--episode-steps", "8"]
    args += ["--workers", "1", "--steps", "5", "--device", "cpu"]
    train_heads.main([*args, "--out", str(tmp_path / "auto")])
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert report["scores_val_real"]["end_recall"] < 0.5 and report["scores_val_real"]["terminates"] is False
    assert load_heads(tmp_path / "auto").cfg.terminates is False
    train_heads.main([*args, "--out", str(tmp_path / "yes"), "--terminate", "yes"])
    assert load_heads(tmp_path / "yes").cfg.terminates is True
