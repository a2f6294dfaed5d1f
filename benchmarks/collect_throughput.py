"""Real-game data throughput: engine steps, the shard collector per core, and on-the-fly workers.

    python -m benchmarks.collect_throughput --seconds 20 --workers 1 2 --out benchmarks/results/collect_cpu.json
    python -m benchmarks.collect_throughput --workers 16 --skip-collector  # the 16-core GPU box

Frames are video frames (4 per env step). "Per core" numbers come from one game: the Python process and
its ViZDoom engine process take turns (synchronous mode), so together they keep about one core busy.
On-the-fly numbers are measured after every worker has delivered its first clip (start-up excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import write_result
from distillation.data.clips import DEFAULT_ENV, ClipGenerator, GenerationConfig, stream_rng
from distillation.data.shards import write_shard
from lingbot_env.doom.game import parse_size


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def engine_fps(gen_cfg: GenerationConfig, seconds: float) -> dict[str, float]:
    """Bare env stepping with fixed actions (no policy, no clip assembly, no writing)."""
    from lingbot_env.doom.env import ViZDoomWASDEnv

    env = ViZDoomWASDEnv(gen_cfg.env)
    rng = np.random.default_rng(0)
    env.reset(seed=0, options={"map": gen_cfg.maps.maps("train")[0]})
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a = rng.random(6).astype(np.float32)
        a[4:] = a[4:] * 2 - 1
        *_, term, trunc, _ = env.step(a)
        steps += 1
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    fps = gen_cfg.frames_per_step * steps / dt
    return {"steps_per_s": steps / dt, "frames_per_s": fps}


def collector_fps(gen_cfg: GenerationConfig, seconds: float, clips_per_shard: int) -> dict[str, float]:
    """The collector's work in one process: play with the explorer, cut clips, compress and write shards."""
    gen = ClipGenerator(gen_cfg)
    frames = clips = shards = 0
    nbytes = 0
    t_play = t_write = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t1 = time.perf_counter()
            batch = list(gen.clips(stream_rng(0, "train", shards), "train", count=clips_per_shard))
            t2 = time.perf_counter()
            entry = write_shard(os.path.join(tmp, f"s{shards}.npz"), batch)
            t_write += time.perf_counter() - t2
            t_play += t2 - t1
            frames += entry["num_frames"]
            clips += len(batch)
            nbytes += entry["bytes"]
            shards += 1
        dt = time.perf_counter() - t0
    gen.close()
    return {
        "frames_per_s": frames / dt,
        "clips_per_s": clips / dt,
        "share_writing": t_write / dt,
        "bytes_per_frame": nbytes / max(frames, 1),
        "frames": frames,
        "seconds": dt,
    }


def online_fps(gen_cfg: GenerationConfig, workers: int, seconds: float) -> dict[str, float]:
    """OnTheFlyClipDataset with ``workers`` game processes, after all of them have started."""
    from distillation.data.dataset import OnTheFlyClipDataset

    ds = OnTheFlyClipDataset(gen_cfg, "train", num_workers=workers, seed=0)
    it = iter(ds)
    t_start = time.perf_counter()
    started: set[str] = set()
    while len(started) < workers:  # each worker's first clip: includes spawn, imports and game start
        started.add(next(it)["clip_id"].split("-")[1])
    warmup = time.perf_counter() - t_start
    frames = items = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        item = next(it)
        frames += int(item["frames"].shape[0])
        items += 1
    dt = time.perf_counter() - t0
    it.close()
    return {"workers": workers, "frames_per_s": frames / dt, "clips_per_s": items / dt, "startup_s": warmup}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per part")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="on-the-fly worker counts to try")
    p.add_argument("--resolution", default="160x120")
    p.add_argument("--frame-size", default=None, help="stored size WxH if different from --resolution")
    p.add_argument("--steps-per-clip", type=int, default=16)
    p.add_argument("--clips-per-shard", type=int, default=8)
    p.add_argument("--skip-collector", action="store_true", help="only the on-the-fly part")
    p.add_argument("--out", default="benchmarks/results/collect_throughput.json")
    a = p.parse_args(argv)

    env = DEFAULT_ENV.replace(
        resolution=a.resolution, frame_size=parse_size(a.frame_size, "frame_size") if a.frame_size else None
    )
    gen_cfg = GenerationConfig(env=env, steps_per_clip=a.steps_per_clip)
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    if not a.skip_collector:
        results["engine"] = engine_fps(gen_cfg, a.seconds)
        print(f"engine: {results['engine']['frames_per_s']:.0f} frames/s (bare env steps)")
        results["collector_per_core"] = collector_fps(gen_cfg, a.seconds, a.clips_per_shard)
        c = results["collector_per_core"]
        print(
            f"collector: {c['frames_per_s']:.0f} frames/s per core ({c['share_writing']:.0%} writing shards, "
            f"{c['bytes_per_frame'] / 1e3:.1f} kB/frame compressed)"
        )
    results["on_the_fly"] = []
    for n in a.workers:
        r = online_fps(gen_cfg, n, a.seconds)
        results["on_the_fly"].append(r)
        print(f"on-the-fly, {n} workers: {r['frames_per_s']:.0f} frames/s ({r['startup_s']:.1f} s start-up)")
    results["load_after"] = os.getloadavg()
    config = {
        "seconds": a.seconds,
        "resolution": env.resolution,
        "frame_size": env.output_size,
        "steps_per_clip": a.steps_per_clip,
        "frames_per_clip": gen_cfg.frames_per_clip,
        "clips_per_episode": gen_cfg.clips_per_episode,
        "episodes_per_map": gen_cfg.episodes_per_map,
        "tics_per_frame": env.tics_per_frame,
        "labels": env.labels,
        "depth": env.depth,
        "cpu_model": cpu_model(),
    }
    record = write_result(a.out, "collect_throughput", "cpu", config, results)
    print(f"wrote {a.out}")
    return record


if __name__ == "__main__":
    main()
