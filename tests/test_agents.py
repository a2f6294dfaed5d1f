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
    assert res["episodes"] == 1 and res["lengths"] == [4]
    with pytest.raises(ValueError, match="unpickles"):
        evaluate.make_policy(str(tmp_path / "model.zip"), None, 0)
    with pytest.raises(ValueError, match="not a saved policy"):
        policy_io.load_policy(tmp_path)
