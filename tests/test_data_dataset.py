"""Datasets: clip windows over shards (4n+1 alignment, layouts) and the on-the-fly worker stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distillation.data.clips import DEFAULT_ENV, Clip, ClipGenerator, GenerationConfig, stream_rng
from distillation.data.collector import _new_index
from distillation.data.dataset import OnTheFlyClipDataset, ShardClipDataset
from distillation.data.shards import shard_name, write_index, write_shard


def _fake_clip(n: int, seed: int) -> Clip:
    """A synthetic clip whose frame f is filled with value f, so window offsets are visible."""
    frames = np.broadcast_to(np.arange(4 * n + 1, dtype=np.uint8)[:, None, None, None], (4 * n + 1, 6, 8, 3)).copy()
    return Clip(
        frames=frames,
        actions=np.arange(n * 6, dtype=np.float32).reshape(n, 6) / 100,
        poses=np.arange((4 * n + 1) * 5, dtype=np.float32).reshape(4 * n + 1, 5),
        rewards=np.arange(n, dtype=np.float32),
        captions=[f"latent {j}" for j in range(n + 1)],
        objects=[[{"name": "DoomImp", "j": j}] for j in range(n + 1)],
        map="MAP01",
        wad="freedoom2",
        seed=seed,
        episode=0,
        index=0,
    )


@pytest.fixture
def fake_root(tmp_path):
    from distillation.collect import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--out", str(tmp_path), "--steps-per-clip", "4"]))
    index = _new_index(cfg)
    entry = write_shard(str(tmp_path / shard_name("train", 0)), [_fake_clip(4, 1), _fake_clip(4, 2)])
    entry.update(split="train", shard=0)
    index["shards"].append(entry)
    write_index(str(tmp_path), index)
    return str(tmp_path)


def test_windows_follow_the_4n_plus_1_layout(fake_root):
    ds = ShardClipDataset(fake_root, "train", steps=2, stride=1)
    assert len(ds) == 2 * 3  # offsets 0, 1, 2 of 4 stored steps, two clips
    item = ds[1]  # clip 0, offset 1 step
    assert item["frames"].shape == (9, 6, 8, 3) and item["frames"].dtype == torch.uint8
    # frame 0 of the window is stored frame 4 (the frame before action 1), then actions 1, 2 produce 8 frames
    np.testing.assert_array_equal(item["frames"][:, 0, 0, 0].numpy(), np.arange(4, 13))
    np.testing.assert_array_equal(item["actions"].numpy(), _fake_clip(4, 1).actions[1:3])
    np.testing.assert_array_equal(item["poses"].numpy(), _fake_clip(4, 1).poses[4:13])
    assert item["captions"] == ["latent 1", "latent 2", "latent 3"] and item["caption"] == "latent 1"
    assert item["seed"] == 1 and ds[3]["seed"] == 2
    with pytest.raises(IndexError):
        ds[6]


def test_float_and_channel_first_layout(fake_root):
    ds = ShardClipDataset(fake_root, "train", dtype="float32", layout="CFHW", with_objects=True)
    item = ds[0]
    assert item["frames"].shape == (3, 17, 6, 8) and item["frames"].dtype == torch.float32
    assert item["frames"][0, 0, 0, 0].item() == -1.0  # value 0 -> -1
    assert item["frames"][0, 16, 0, 0].item() == pytest.approx(16 / 127.5 - 1)
    assert '"j": 4' in item["objects"]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["frames"].shape == (2, 3, 17, 6, 8) and len(batch["captions"]) == 5


def test_dataset_errors(tmp_path, fake_root):
    with pytest.raises(FileNotFoundError, match="no index.json"):
        ShardClipDataset(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="steps must be in 1..4"):
        ShardClipDataset(fake_root, steps=5)


def test_on_the_fly_workers_stream_the_generator():
    pytest.importorskip("vizdoom")
    g = GenerationConfig(env=DEFAULT_ENV.replace(frame_size=(64, 48)), steps_per_clip=2, clips_per_episode=1)
    ds = OnTheFlyClipDataset(g, "train", num_workers=1, seed=3, max_clips=2)
    items = list(ds)
    assert len(items) == 2
    assert ds.last_exitcodes == [0]  # the worker closed its game and exited by itself
    gen = ClipGenerator(g)
    try:
        want = list(gen.clips(stream_rng(3, "train", 0, "online"), "train", count=2))
    finally:
        gen.close()
    for item, clip in zip(items, want):
        assert item["frames"].shape == (9, 48, 64, 3)
        np.testing.assert_array_equal(item["frames"].numpy(), clip.frames)  # worker 0 = stream 0
        np.testing.assert_array_equal(item["actions"].numpy(), clip.actions)
        assert item["map"] in g.maps.maps("train")


def test_on_the_fly_workers_end_when_their_consumer_is_killed():
    """A trainer killed with SIGKILL leaves no game workers playing on (they held CPU cores until found)."""
    pytest.importorskip("vizdoom")
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import time\n"
        "from distillation.data.dataset import OnTheFlyClipDataset\n"
        "from distillation.data.clips import GenerationConfig, DEFAULT_ENV\n"
        "g = GenerationConfig(env=DEFAULT_ENV.replace(frame_size=(64, 48)), steps_per_clip=2, clips_per_episode=1)\n"
        "it = iter(OnTheFlyClipDataset(g, 'train', num_workers=2, seed=3))\n"
        "next(it)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    consumer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout.readline().strip() == "ready"
        children = subprocess.run(
            ["pgrep", "-P", str(consumer.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        workers = [int(pid) for pid in children if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2, children
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.wait()
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in workers):
            assert time.monotonic() < deadline, "game workers kept playing after their consumer was killed"
            time.sleep(0.5)
    finally:
        consumer.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_held_out_batches_are_the_same_every_time():
    pytest.importorskip("vizdoom")
    from distillation.doom_data import held_out_batches

    def first() -> dict:
        batches = held_out_batches("onthefly", 2, 1, "cpu", seed=5)
        try:
            return next(batches)
        finally:
            batches.close()

    a, b = first(), first()
    assert a["video"].shape == (2, 3, 5, 96, 128)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["actions"], b["actions"])
    assert a["captions"] == b["captions"]
