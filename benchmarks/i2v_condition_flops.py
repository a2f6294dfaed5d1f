"""FLOPs of the I2V condition ``y``: the prefix-only builder vs. encoding [image, F-1 fill frames] the slow way.

    python benchmarks/i2v_condition_flops.py --out benchmarks/results/i2v_condition_flops_meta.json
    python benchmarks/i2v_condition_flops.py --quick --out /tmp/i2v.json     # smoke run, tiny size

Counted with ``torch.utils.flop_counter`` (2 FLOPs per multiply-add; convolutions, matmuls and attention) on
``meta`` tensors: no compute, no weights, so any CPU runs it in seconds and the numbers are the same on every
device. ``fast`` is one ``I2VConditionBuilder`` call with its per-resolution steady-state cache already built;
``steady_state_cache`` is the one-time cost of building that cache; ``slow`` is ``WanVAE.encode`` (the official
chunk schedule, as ``i2v_condition_slow`` runs it) of the full clip. The VAE encoder is the released Wan2.1 one
(width 96) unless ``--vae-dim`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import world_model.vae.i2v_condition as i2v_condition  # noqa: E402
from benchmarks.common import write_result  # noqa: E402
from world_model.vae import I2VConditionBuilder, VAEConfig, WanVAE, count_parameters  # noqa: E402


def _shape_checks_only(image: torch.Tensor, **_: Any) -> torch.Tensor:
    """The builder's value-range check reads pixel values, which meta tensors do not have."""
    return image


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measure(vae: WanVAE, frames: int, h: int, w: int) -> dict[str, Any]:
    """FLOPs of building y for one image at (frames, h, w), fast and slow (meta tensors)."""
    with torch.device("meta"):
        image = torch.zeros(1, 3, h, w)
        clip = torch.zeros(1, 3, frames, h, w)  # [image, F-1 fill frames]: values do not matter for counting
    builder = I2VConditionBuilder(vae)
    with torch.no_grad(), mock.patch.object(i2v_condition, "check_image", _shape_checks_only):
        stages = vae.encoder.stages()
        steady = count_flops(lambda: builder._steady_states(h, w, torch.device("meta"), stages))
        y_shape: list[torch.Size] = []
        fast = count_flops(lambda: y_shape.append(builder(image, frames).shape))
        z_shape: list[torch.Size] = []
        slow = count_flops(lambda: z_shape.append(vae.encode(clip, check_range=False).shape))
    stats = builder.last_stats
    assert stats is not None
    return {
        "frames": frames,
        "latent_frames": vae.config.num_latent_frames(frames),
        "y_shape": list(y_shape[0]),
        "fast_flop": fast,
        "slow_flop": slow,
        "steady_state_cache_flop": steady,
        "fast_tflop": round(fast / 1e12, 2),
        "slow_tflop": round(slow / 1e12, 2),
        "steady_state_cache_tflop": round(steady / 1e12, 3),
        "slow_over_fast": round(slow / fast, 2),
        "slow_over_fast_plus_cache": round(slow / (fast + steady), 2),
        "encoder_stage_frames_fast": stats.fast_frames,
        "encoder_stage_frames_slow": stats.full_frames,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--quick", action="store_true", help="tiny VAE and size (smoke run)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--frames", default="81,33,17", help="video frame counts (4n+1), the first is the headline")
    p.add_argument("--vae-dim", type=int, default=96, help="Wan VAE base width (96 = the released model)")
    args = p.parse_args(argv)
    if args.quick:
        args.height, args.width, args.frames, args.vae_dim = 32, 32, "17", 8
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    frames = [int(f) for f in args.frames.split(",") if f]
    with torch.device("meta"):
        vae = WanVAE(VAEConfig(dim=args.vae_dim)).eval().requires_grad_(False)
    runs = [measure(vae, f, args.height, args.width) for f in frames]
    for r in runs:
        print(
            f"F={r['frames']:3d}: fast {r['fast_tflop']} TFLOP, slow {r['slow_tflop']} TFLOP "
            f"({r['slow_over_fast']}x), cache once {r['steady_state_cache_tflop']} TFLOP",
            file=sys.stderr,
        )
    head = runs[0]
    results = {
        "runs": runs,
        "summary": {
            "frames": head["frames"],
            "fast_tflop": head["fast_tflop"],
            "slow_tflop": head["slow_tflop"],
            "slow_over_fast": head["slow_over_fast"],
            "wall_seconds": round(time.perf_counter() - t_start, 1),
        },
    }
    config = {
        "tensors": "meta (FLOP counting only, no compute)",
        "counter": "torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per multiply-add",
        "height": args.height,
        "width": args.width,
        "frames": frames,
        "batch": 1,
        "vae_dim": args.vae_dim,
        "vae_parameters": count_parameters(vae),
        "quick": args.quick,
        "fast": "I2VConditionBuilder(vae)(image, F), steady-state cache already built for the resolution",
        "slow": "WanVAE.encode([image, F-1 fill frames]), official chunk schedule",
    }
    record = write_result(args.out, "i2v_condition_flops", "cpu", config, results)
    print(f"wrote {args.out}: {results['summary']}", file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
