"""One way in: the env, the CLI, the harness and a benchmark turn the same ``model`` spec into the same world, all
through ``world_model.bundle.load_world``."""

import argparse

import gymnasium as gym
import pytest
import torch
from helpers import tiny_world

import lingbot_env  # noqa: F401  (registers the envs)
from benchmarks import env_throughput
from distillation.evaluation.models import model_from_spec
from lingbot_env.__main__ import build_parser
from lingbot_env.__main__ import make_env as cli_env
from world_model import bundle
from world_model.bundle import load_world, save_world


def entry_points(spec: str) -> dict:
    """``{entry point: world}`` for ``spec``, each reached the way that entry point reaches it."""
    env = gym.make("LingBotWorld-v0", model=spec, disable_env_checker=True)
    cli = cli_env(build_parser().parse_args(["--model", spec, "--headless"]), None)
    bench = env_throughput.make_env(argparse.Namespace(model=spec, device="cpu", dtype=None, image=None), 1)
    harness = model_from_spec(spec, batch_size=1)
    worlds = {
        "load_world": load_world(spec),
        "gym.make": env.unwrapped.world,
        "cli": cli.world,
        "benchmark": bench.world,
        "harness": harness.world,
    }
    for e in (env, cli, bench):
        e.close()
    return worlds


def test_every_entry_point_gets_the_same_world_from_a_bundle_folder(tmp_path):
    saved = tiny_world(batch_size=1)
    folder = save_world(tmp_path / "tiny", saved, notes={"trained": False}, dtype=torch.float32)
    worlds = entry_points(str(folder))
    for name, world in worlds.items():
        assert world.spec == saved.spec, name
        assert world.notes == {"trained": False}, name
        got = {k: v.float() for k, v in world.dit.state_dict().items()}
        want = {k: v.float() for k, v in saved.dit.state_dict().items()}
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name


def test_default_is_one_spec_everywhere(monkeypatch, tmp_path):
    """``"default"`` and None name the same world in the resolver itself, so no entry point maps it on its own."""
    saved = tiny_world(batch_size=1)
    save_world(tmp_path / "doom", saved, dtype=torch.float32)
    monkeypatch.setattr(bundle, "DEFAULT_BUNDLE", tmp_path / "doom")
    assert load_world("default").spec == load_world(None).spec == saved.spec
    assert model_from_spec("default", batch_size=1).world.spec == saved.spec


def test_an_unknown_spec_is_refused_the_same_way_everywhere():
    with pytest.raises(FileNotFoundError, match="not a folder here nor a known preset"):
        load_world("no-such-world")
    with pytest.raises(FileNotFoundError, match="not a folder here nor a known preset"):
        gym.make("LingBotWorld-v0", model="no-such-world", disable_env_checker=True)
    with pytest.raises(ValueError, match="unknown model spec 'no-such-world'"):
        model_from_spec("no-such-world")
