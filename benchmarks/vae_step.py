"""What a Doom VAE training step costs: whole 96x128 frames against random windows (``--crop``), eager and
compiled, as milliseconds per step, clips per second and TFLOP/s (torch's FLOP counter). Writes JSON.

    python -m benchmarks.vae_step --device cuda --crops 96x128 64x64 --out benchmarks/results/vae_step_h100.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import cuda_time_ms, write_result
from distillation.train_vae import VAETrainConfig, optimisation_step, parse_crop, reconstruct
from distillation.training.optim import fused_adamw
from distillation.vae_export import for_cuda_convs
from world_model import doom
from world_model.vae import WanVAE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crops", nargs="+", default=["96x128", "64x64"], help="HxW windows to time (96x128: whole)")
    ap.add_argument("--compile", action="store_true", help="also time the compiled step (slow to compile)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    device = torch.device(args.device)
    cfg = VAETrainConfig(device=args.device, batch_size=args.batch_size)
    vae = for_cuda_convs(WanVAE(doom.vae_config()).to(device))
    opt = fused_adamw(vae.parameters(), cfg.lr)
    frames = 4 * cfg.steps + 1
    res: dict[str, dict[str, float]] = {}
    forwards = {"eager": reconstruct, **({"compiled": torch.compile(reconstruct)} if args.compile else {})}
    for crop in args.crops:
        h, w = parse_crop(crop)
        video = torch.rand(args.batch_size, 3, frames, h, w, device=device) * 2 - 1
        if device.type == "cuda":
            video = video.contiguous(memory_format=torch.channels_last_3d)
        with FlopCounterMode(display=False) as counter:
            optimisation_step(reconstruct, vae, opt, video, cfg)
        tflop = counter.get_total_flops() / 1e12
        row: dict[str, float] = {"tflop_per_step": tflop}
        for name, forward in forwards.items():
            t0 = time.perf_counter()
            ms = statistics.fmean(
                cuda_time_ms(
                    lambda f=forward, v=video: optimisation_step(f, vae, opt, v, cfg), warmup=2, repeat=args.iters
                )
            )
            row[f"{name}_ms"] = ms
            row[f"{name}_clips_per_s"] = args.batch_size / ms * 1e3
            row[f"{name}_tflop_per_s"] = tflop / ms * 1e3
            row[f"{name}_first_calls_s"] = time.perf_counter() - t0
        res[crop] = row
        print(crop, json.dumps(row), flush=True)
        if args.out:  # after each size: a run cut short still leaves what it measured
            write_result(args.out, "vae_step", args.device, vars(args), res)


if __name__ == "__main__":
    main()
