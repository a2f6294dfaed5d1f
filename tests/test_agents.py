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
