"""Constant time and memory per step over a long rollout: step one world 10,000 times through the env.

    python -m benchmarks.long_rollout --model default --steps 10000 --threads 2 \\
        --out benchmarks/results/long_rollout_cpu2.json

The KV cache rolls (sink + window), so every step should cost the same and the process should not grow. Per block
of ``--block`` steps the JSON records the median step time and the process's resident memory (RSS, from
/proc/self/statm; peak CUDA memory on a GPU); the summary compares the last block with the first after warm-up.
Speed and memory depend on the architecture, not on the weights: ``--model doom-untrained`` measures the same.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks.common import write_result


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(model: str, steps: int, block: int, device: str, seed: int) -> dict[str, Any]:
    from lingbot_env.world_env import LingBotWorldEnv

    env = LingBotWorldEnv(model=model, device=device, action_clip="clip", num_threads=None)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    blocks: list[dict[str, float]] = []
    times: list[float] = []
    for t in tqdm(range(steps), desc="long rollout", unit="step"):
        action = rng.uniform([0, 0, 0, 0, -1, -1], 1).astype(np.float32)
        t0 = time.perf_counter()
        env.step(action)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
        if (t + 1) % block == 0:
            entry = {"step": t + 1, "step_ms_median": float(np.median(times[-block:])), "rss_mib": rss_mib()}
            if device.startswith("cuda"):
                entry["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            blocks.append(entry)
    spec = env.world.spec
    env.close()
    first, last = blocks[min(1, len(blocks) - 1)], blocks[-1]  # block 0 holds the warm-up (cache filling)
    return {
        "blocks": blocks,
        "video_frames_per_step": spec.frames_per_step,
        "summary": {
            "first_block": first,
            "last_block": last,
            "step_ms_ratio_last_over_first": last["step_ms_median"] / first["step_ms_median"],
            "rss_growth_mib": last["rss_mib"] - first["rss_mib"],
            "video_frames_per_s_last_block": 1e3 * spec.frames_per_step / last["step_ms_median"],
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="a model spec (world_model.bundle.load_world)")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=500, help="steps per recorded block")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/long_rollout.json")
    args = ap.parse_args(argv)
    if args.steps < 2 * args.block:
        ap.error("--steps must be at least two --block lengths (the first block is warm-up)")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.model, args.steps, args.block, args.device, args.seed)
    write_result(args.out, "long_rollout", args.device, vars(args), result)
    s = result["summary"]
    print(
        f"{args.steps} steps: last/first block step time {s['step_ms_ratio_last_over_first']:.3f}, "
        f"RSS growth {s['rss_growth_mib']:+.1f} MiB, {s['video_frames_per_s_last_block']:.1f} video frames/s"
    )


if __name__ == "__main__":
    main()
