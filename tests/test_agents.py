"""The transfer task and its evaluation in the real game."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import evaluate
from agents.task import ExploreTask


def test_maps_are_the_split_and_drawn_reproducibly():
    task = ExploreTask(episode_steps=2)
    assert set(task.maps("train")).isdisjoint(task.maps("val"))
    seen = []
    for _ in range(2):
        env = task.real_env("val", seed=0)
        seen.append([env.reset(seed=s)[1]["map"] for s in range(4)])
        env.close()
    assert seen[0] == seen[1] and set(seen[0]) <= set(task.maps("val"))
    with pytest.raises(ValueError, match="split"):
        task.maps("test")


def test_evaluate_writes_returns_with_their_error(tmp_path):
    out = tmp_path / "r.json"
    evaluate.main(["--policy", "random", "--episodes", "2", "--episode-steps", "5", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["episodes"] == 2 and len(res["returns"]) == 2 and all(n == 5 for n in res["lengths"])
    assert res["mean_return"] == pytest.approx(np.mean(res["returns"]))


def test_evaluate_counts_the_deaths_the_game_reports():
    """A death mid-step leaves ``health`` above 0 at the last frame read: the count comes from the game itself."""
    pytest.importorskip("vizdoom")
    task = ExploreTask(episode_steps=60)
    died = evaluate.evaluate("random", task, "train", 1, seed=10003, progress=False)  # a monster kills it early
    lived = evaluate.evaluate("random", task, "train", 1, seed=10000, progress=False)  # it lasts the episode
    assert died["deaths"] == 1 and died["lengths"][0] < 60
    assert lived["deaths"] == 0 and lived["lengths"] == [60]


def test_policy_spaces_are_stored_small_and_old_files_still_read():
    from gymnasium import spaces

    from agents.policy_io import _box, _unbox

    image = spaces.Box(0, 255, (3, 96, 128), np.uint8)
    action = spaces.Box(np.array([0, 0, 0, 0, -1, -1], np.float32), 1.0, dtype=np.float32)
    assert _box(image)["low"] == 0 and _unbox(_box(image)) == image and _unbox(_box(action)) == action
    old = {"low": image.low.tolist(), "high": image.high.tolist(), "dtype": "uint8"}  # before "shape" was stored
    assert _unbox(old) == image


def test_unknown_policy_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="random"):
        evaluate.make_policy("nope", None, 0)


def test_ppo_in_the_real_game_saves_resumes_and_is_scored_from_its_folder(tmp_path, capsys):
    """Tiny budget: a checkpoint at each evaluation, the same command with a larger budget goes on from it (the
    curve continues, the steps add up), and the saved policy (safetensors + JSON) plays in agents.evaluate."""
    pytest.importorskip("vizdoom")
    pytest.importorskip("stable_baselines3")
    from agents import policy_io, train_ppo

    out = tmp_path / "ppo"
    argv = ["--world", "real", "--envs", "2", "--n-steps", "8", "--eval-every", "16", "--eval-episodes", "1"]
    argv += ["--episode-steps", "5", "--out", str(out)]
    from distillation.training.checkpoint import load_checkpoint

    train_ppo.main([*argv, "--timesteps", "16"])
    first = load_checkpoint(out / "checkpoint.pt")
    assert first["step"] == 16 and [c["timesteps"] for c in first["curve"]["points"]] == [0, 16]
    train_ppo.main([*argv, "--timesteps", "32"])
    assert "resumed from" in capsys.readouterr().out
    curve = json.loads((out / "curve.json").read_text())["curve"]
    assert [c["timesteps"] for c in curve] == [0, 16, 32]
    assert json.loads((out / "policy.json").read_text())["timesteps"] == 32
    res = evaluate.evaluate(str(out), ExploreTask(episode_steps=4), "val", 1, seed=0, progress=False)
    assert res["episodes"] == 1 and res["lengths"] == [4] and not res["stochastic"]
    _stochastic_policy_is_seeded_and_leaves_the_global_rng(out)
    with pytest.raises(ValueError, match="unpickles"):
        evaluate.make_policy(str(tmp_path / "model.zip"), None, 0)
    with pytest.raises(ValueError, match="not a saved policy"):
        policy_io.load_policy(tmp_path)


def test_ppo_with_an_agent_view_records_it_and_is_scored_through_it(tmp_path):
    """--view-*: the policy learns on 48 x 36 gray frames, 2 stacked; policy.json records the view, the evaluator
    plays the raw game through it, and a resume with another view is refused."""
    pytest.importorskip("vizdoom")
    pytest.importorskip("stable_baselines3")
    from agents import policy_io, train_ppo

    out = tmp_path / "ppo"
    argv = ["--world", "real", "--envs", "2", "--n-steps", "8", "--eval-every", "16", "--eval-episodes", "1"]
    argv += ["--episode-steps", "5", "--out", str(out), "--view-size", "48x36", "--view-gray", "--view-stack", "2"]
    train_ppo.main([*argv, "--timesteps", "16"])
    meta = policy_io.read_meta(out)
    assert meta["view"] == {"size": [48, 36], "gray": True, "stack": 2}
    assert sorted(meta["observation_space"]["shape"]) == [2, 36, 48]
    res = evaluate.evaluate(str(out), ExploreTask(episode_steps=4), "val", 1, seed=0, progress=False)
    assert res["lengths"] == [4]
    with pytest.raises(ValueError, match="view_stack"):
        train_ppo.main([*argv[:-1], "3", "--timesteps", "32"])


def _stochastic_policy_is_seeded_and_leaves_the_global_rng(folder):
    import torch

    from agents.policy_io import load_policy

    obs = np.zeros(load_policy(folder).observation_space.shape, np.uint8)
    greedy, _ = evaluate.make_policy(str(folder), None, 0)
    sample, reseed = evaluate.make_policy(str(folder), None, 0, stochastic=True)
    assert np.array_equal(greedy(obs, {}), greedy(obs, {}))
    before = torch.random.get_rng_state()
    first = [sample(obs, {}) for _ in range(3)]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not np.array_equal(first[0], first[1])  # it samples
    reseed(0)
    assert all(np.array_equal(x, y) for x, y in zip(first, [sample(obs, {}) for _ in range(3)]))


def test_side_by_side_plays_one_policy_in_both_worlds_and_writes_video_and_log(tmp_path):
    """The same policy in the game and in a world from the game's first frame: an MP4 of both panels and a JSON
    whose per-step rewards add up to the returns it reports; an episode that ends early holds its last frame."""
    pytest.importorskip("vizdoom")
    from agents import side_by_side
    from lingbot_env.video import mp4_available

    if not mp4_available():
        pytest.skip("imageio-ffmpeg missing")
    out = tmp_path / "sbs.mp4"
    res = side_by_side.side_by_side("random", "doom-untrained", out, steps=3, seed=0)
    log = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 0 and log["steps"] == res["steps"] == 3
    assert log["return_game"] == pytest.approx(sum(log["reward_game"]))
    assert log["return_dream"] == pytest.approx(sum(log["reward_dream"]))
    assert log["dream_reward_source"] == "none"  # an untrained world without heads pays nothing, and says so
    assert log["ended_at"]["dream"] == 3 and len(log["action_dream"]) == 3
    with pytest.raises(ValueError, match="explorer"):
        side_by_side.side_by_side("explorer", "doom-untrained", out, steps=1)
    held = side_by_side._hold(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3), 4)
    assert held.shape[0] == 4 and (held[2] == held[1]).all() and (held[3] == held[1]).all()
