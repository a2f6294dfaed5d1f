"""Smoke tests of the scripts people run first: the PPO example on a tiny world, the play CLI's help, and the env
throughput benchmark's JSON record of a loaded model (CPU, a couple of steps)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()  # the scripts set their own thread count
    yield
    torch.set_num_threads(threads)


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:rich is experimental")  # SB3's progress bar through tqdm.rich
@pytest.mark.parametrize("num_envs", [1, 2])
def test_train_ppo_example_tiny(num_envs, tmp_path, capsys, keep_torch_threads):
    ppo = load_example("train_ppo_in_world")
    out = tmp_path / "ppo"
    argv = ["--tiny", "--num-envs", str(num_envs), "--n-steps", "8", "--timesteps", "8", "--episode-steps", "4"]
    ppo.main([*argv, "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"trained {8 * num_envs} steps in" in printed and "episode return" in printed
    from agents.policy_io import load_policy

    assert load_policy(out).observation_space.shape == (3, 48, 64)  # SB3 transposes images to CHW


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_play_cli_help_exits_0():
    done = _run("-m", "lingbot_env", "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "--model" in text and "--record" in text and "--headless" in text and "action scripts" in text
    # The release is passed as its root folder; "lingbot-world-fast" alone has no weights in this package.
    assert "--model /path/to/lingbot-world-release" in text and "--model lingbot-world-fast" not in text
    assert "--model lingbot-world-fast" not in (ROOT / "examples" / "play.py").read_text()


def test_env_throughput_records_the_loaded_models_shape(tmp_path, keep_torch_threads):
    from PIL import Image

    from benchmarks import env_throughput

    image = tmp_path / "start.png"
    Image.fromarray(np.full((32, 48, 3), 128, np.uint8)).save(image)
    out = tmp_path / "bench.json"
    argv = ["--model", "factory:helpers:tiny_world", "--image", str(image), "--steps", "2", "--warmup", "0"]
    env_throughput.main([*argv, "--num-envs", "1,2", "--out", str(out)])
    record = json.loads(out.read_text())
    config = record["config"]
    assert config["model"] == "factory:helpers:tiny_world"
    assert not set(env_throughput.SHAPE_FLAGS) & set(config)  # the random world's flags were not used
    shape = config["model_shape"]
    from helpers import tiny_world

    world = tiny_world()
    assert shape["resolution"] == "32x48" and shape["frames_per_step"] == 4
    assert shape["dit_config"]["dim"] == world.dit.cfg.dim == 64 and shape["dit_config"]["control_dim"] == 7
    assert shape["dit_params"] == sum(p.numel() for p in world.dit.parameters())
    assert shape["decoder_params"] == sum(p.numel() for p in world.decoder.parameters())
    assert (
        shape["total_params"] == sum(shape[f"{k}_params"] for k in ("dit", "encoder", "decoder", "text_encoder"))
        and not shape["decoder_is_encoder"]
    )
    assert shape["stream"]["denoise_steps"] == len(world.spec.stream.schedule.timesteps)
    assert shape["control"]["kind"] == "act" and shape["dit_dtype"] == "float32"
    assert [r["num_envs"] for r in record["results"]["runs"]] == [1, 2]
    assert record["results"]["runs"][0]["dit_params"] == shape["dit_params"]
