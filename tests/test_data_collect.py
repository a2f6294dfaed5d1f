"""Collector: writes shards, resumes after SIGKILL without losing or duplicating clips, reads back exactly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from distillation.collect import build_parser, config_from_args
from distillation.data.clips import ClipGenerator, stream_rng
from distillation.data.collector import CollectConfig, collect
from distillation.data.dataset import ShardClipDataset
from distillation.data.report import make_report
from distillation.data.shards import ShardReader, load_index, write_index

pytest.importorskip("vizdoom")

# Tiny but real: 64x48 frames resized from 160x120, 2-step clips (9 frames), one clip per episode.
ARGS = [
    "--train-shards", "3", "--val-shards", "1", "--clips-per-shard", "3", "--steps-per-clip", "2",
    "--clips-per-episode", "1", "--episodes-per-map", "2", "--frame-size", "64x48", "--seed", "7", "--no-progress",
]  # fmt: skip


def _config(out: str, extra: list[str] | None = None) -> CollectConfig:
    return config_from_args(build_parser().parse_args(["--out", out, *ARGS, *(extra or [])]))


def _contents(root: str) -> dict:
    """Everything stored, per (split, shard): arrays and metadata (zip timestamps aside)."""
    index = load_index(root)
    out = {}
    for e in index["shards"]:
        with ShardReader(os.path.join(root, e["file"])) as r:
            out[(e["split"], e["shard"])] = {
                "frames": [r.frames(i) for i in range(len(r))],
                "actions": r.small("actions"),
                "poses": r.small("poses"),
                "rewards": r.small("rewards"),
                "meta": r.meta,
            }
    return out


def _assert_same_contents(root: str, reference: str) -> dict:
    """The shards of ``root`` hold exactly what the reference collection holds; returns ``root``'s contents."""
    got, want = _contents(root), _contents(reference)
    assert got.keys() == want.keys()
    for key in want:
        for name in ("actions", "poses", "rewards"):
            np.testing.assert_array_equal(got[key][name], want[key][name])
        assert len(got[key]["frames"]) == len(want[key]["frames"]) == 3
        for a, b in zip(got[key]["frames"], want[key]["frames"]):
            np.testing.assert_array_equal(a, b)
        assert got[key]["meta"] == want[key]["meta"]
    return got


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """An uninterrupted in-process collection."""
    root = str(tmp_path_factory.mktemp("reference"))
    collect(_config(root))
    return root


def test_collect_writes_index_and_shards(reference):
    index = load_index(reference)
    # Shards are indexed as they finish; with 2 workers the order varies, the set must not.
    shards = sorted((e["split"], e["shard"]) for e in index["shards"])
    assert shards == [("train", 0), ("train", 1), ("train", 2), ("val", 0)]
    assert index["frames_per_clip"] == 9 and index["frame_size"] == [64, 48] and index["frames_per_step"] == 4
    assert index["action_spec"]["max_yaw_deg_per_frame"] == 2.0
    val_maps = set(index["splits"]["val"])
    for e in index["shards"]:
        assert e["num_clips"] == 3 and e["num_frames"] == 27
        # the split is by map: a validation map never feeds training and vice versa
        assert set(e["maps"]) <= val_maps if e["split"] == "val" else set(e["maps"]).isdisjoint(val_maps)
    with ShardReader(os.path.join(reference, "train-00000.npz")) as r:
        c = r.clip(0)
        assert c.frames.shape == (9, 48, 64, 3) and c.frames.dtype == np.uint8
        assert c.actions.shape == (2, 6) and c.poses.shape == (9, 5) and c.rewards.shape == (2,)
        assert len(c.captions) == 3 and len(c.objects) == 3 and c.wad == "freedoom2"
    assert np.load(os.path.join(reference, "train-00000.npz"))["actions"].shape == (3, 2, 6)  # plain npz too
    assert not [f for f in os.listdir(reference) if ".tmp-" in f]


def test_resume_after_sigkill_loses_and_duplicates_nothing(reference, tmp_path):
    root = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "distillation.collect", "--out", root, *ARGS]
    # Own session: the kill also takes the game engine process down, like a real crash.
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the killed engine's scratch folder stays in tmp_path
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    index_path = os.path.join(root, "index.json")
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(index_path):
            with open(index_path) as f:
                done = len(json.load(f)["shards"])
            if done >= 1:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"collector ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = load_index(root)
    assert 1 <= len(killed["shards"]) < 4  # killed part-way
    # resume with 2 worker processes: only the missing shards are made, by processes with other histories
    index = collect(_config(root, ["--workers", "2"]))
    # Shards are indexed as they finish; with 2 workers the order varies, the set must not.
    shards = sorted((e["split"], e["shard"]) for e in index["shards"])
    assert shards == [("train", 0), ("train", 1), ("train", 2), ("val", 0)]
    assert not [f for f in os.listdir(root) if ".tmp-" in f]
    got = _assert_same_contents(root, reference)
    seeds = [(m["map"], m["seed"]) for v in got.values() for m in v["meta"]["clips"]]
    assert len(seeds) == len(set(seeds)) == 12  # every episode once


def test_resume_removes_temporaries_and_remakes_unlisted_and_vanished_shards(reference, tmp_path):
    root = tmp_path / "partial"
    shutil.copytree(reference, root)
    index = load_index(str(root))
    # train-00001: its file was being written when the collector died, so the index does not list it.
    index["shards"] = [e for e in index["shards"] if (e["split"], e["shard"]) != ("train", 1)]
    write_index(str(root), index)
    (root / "train-00001.npz").write_bytes(b"PK\x03\x04 half a zip")
    # val-00000: listed, but its file is gone (deleted by hand, lost in a copy).
    os.remove(root / "val-00000.npz")
    stale = [root / "train-00002.npz.tmp-999", root / "index.json.tmp-999"]
    for p in stale:
        p.write_bytes(b"junk of a killed collector")
    kept = {name: os.stat(root / name).st_mtime_ns for name in ("train-00000.npz", "train-00002.npz")}
    index = collect(_config(str(root)))
    assert not any(p.exists() for p in stale)
    assert not [f for f in os.listdir(root) if ".tmp-" in f]
    assert sorted((e["split"], e["shard"]) for e in index["shards"]) == [
        ("train", 0), ("train", 1), ("train", 2), ("val", 0),
    ]  # fmt: skip
    on_disk = load_index(str(root))["shards"]
    assert on_disk == sorted(index["shards"], key=lambda e: (e["split"], e["shard"]))
    # Listed shards whose files exist are kept as they are, not made again.
    assert {name: os.stat(root / name).st_mtime_ns for name in kept} == kept
    _assert_same_contents(str(root), reference)


def test_plugin_policy_factory(reference, tmp_path):
    """``--policy package.module:factory`` plays with ``factory(seed)``: here the built-in RandomPolicy class."""
    small = ["--train-shards", "1", "--val-shards", "0", "--clips-per-shard", "1"]
    spec = "distillation.data.policy:RandomPolicy"
    plugged = _config(str(tmp_path / "plugged"), [*small, "--policy", spec])
    assert plugged.generation.policy == spec
    index = collect(plugged)
    assert index["content"]["generation"]["policy"] == spec and len(index["shards"]) == 1
    collect(_config(str(tmp_path / "builtin"), [*small, "--policy", "random"]))
    got = _contents(str(tmp_path / "plugged"))[("train", 0)]
    want = _contents(str(tmp_path / "builtin"))[("train", 0)]
    np.testing.assert_array_equal(got["actions"], want["actions"])
    np.testing.assert_array_equal(got["frames"][0], want["frames"][0])
    # Uniform random key values, where the default explorer only ever presses keys fully (0 or 1).
    keys = got["actions"][..., :4]
    assert ((keys > 0.01) & (keys < 0.99)).any()
    explorer = np.concatenate([v["actions"][..., :4].ravel() for v in _contents(reference).values()])
    assert set(np.unique(explorer)) <= {0.0, 1.0}


def test_dataset_reads_back_what_was_generated(reference):
    cfg = _config(reference)
    gen = ClipGenerator(cfg.generation)
    try:
        clips = list(gen.clips(stream_rng(cfg.seed, "train", 1, "shard"), "train", count=3))
    finally:
        gen.close()
    ds = ShardClipDataset(reference, "train")
    assert len(ds) == 9
    for i, clip in enumerate(clips):
        item = ds[3 + i]  # shard 1, clip i
        assert item["clip_id"] == f"train-00001.npz#{i}@0"
        np.testing.assert_array_equal(item["frames"].numpy(), clip.frames)
        np.testing.assert_array_equal(item["actions"].numpy(), clip.actions)
        np.testing.assert_array_equal(item["poses"].numpy(), clip.poses)
        np.testing.assert_array_equal(item["rewards"].numpy(), clip.rewards)
        assert item["captions"] == clip.captions and item["caption"] == clip.captions[0]
        assert item["map"] == clip.map and item["seed"] == clip.seed
        # frame 0 is the start frame; action i produced frames 4i+1..4i+4, whose poses are after it
        np.testing.assert_array_equal(item["poses"][4].numpy(), clip.poses[4])
    val = ShardClipDataset(reference, "val")
    assert len(val) == 3 and {val[i]["map"] for i in range(3)} <= set(load_index(reference)["splits"]["val"])


def test_different_settings_are_refused(reference):
    with pytest.raises(ValueError, match="different settings"):
        collect(_config(reference, ["--seed", "8"]))


def test_report(reference, tmp_path):
    s = make_report(reference, str(tmp_path), samples=6)
    assert s["splits"]["train"]["frames"] == 81 and s["splits"]["val"]["frames"] == 27
    assert s["actions"]["steps"] == 24
    assert abs(sum(s["actions"]["combos"].values()) - 1.0) < 1e-3
    for name in s["files"]:
        assert os.path.getsize(tmp_path / name) > 0
    assert sum(1 for f in s["files"] if f.startswith("coverage_")) == len(s["coverage"]) >= 2


def test_cli_help_and_bad_input():
    for mod in ("distillation.collect", "distillation.data_report"):
        out = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "distillation.collect", "--out", "/nonexistent/x", "--resolution", "100x100"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unsupported resolution 100x100" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "distillation.collect", "--out", "/nonexistent/x", "--val-maps", "MAP77"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown map 'MAP77'" in bad.stderr
