"""Where a Doom teacher training step spends its time: the flow-matching step on fixed random latents (eager and
compiled), its parts, and the replay transform (VAE encode of a played batch). Writes JSON.

    python -m benchmarks.teacher_step --device cuda --out benchmarks/results/teacher_step_h100.json
    python -m benchmarks.teacher_step --device cuda --compiled-only --batch-size 64 128 --out ...

Each batch size compiles anew (static shapes, as the trainer's one fixed batch), a few minutes each on the H100:
the JSON is rewritten after every row, so a run stopped by the device's time limit keeps the rows it finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.common import cuda_time_ms, sync, write_result
from distillation.teacher import ClipConditioner, build_models, encode_text
from distillation.train_teacher import TeacherTrainConfig, encode_clips, make_optimizer, optimisation_step
from distillation.training.ema import EMA
from distillation.vae_export import load_exported_vae


def timed(fn, iters: int) -> float:
    """Mean milliseconds per call after two warm-up calls."""
    return statistics.fmean(cuda_time_ms(fn, warmup=2, repeat=iters))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64], help="first: every part; others: compiled step")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--vae", default="checkpoints/doom_vae", help="a VAE export: times encoding a played batch")
    ap.add_argument("--compiled-only", action="store_true", help="skip the parts and the eager step")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    device = torch.device(args.device)
    cfg = TeacherTrainConfig(device=args.device, batch_size=args.batch_size[0])
    dit, text = build_models(device)
    cond = ClipConditioner(device)
    b, t = max(args.batch_size), cfg.clip_steps + 1
    x0 = torch.randn(b, 16, t, 12, 16, device=device)
    actions = torch.rand(b, cfg.clip_steps, 6, device=device) * 2 - 1
    captions = [f"a corridor with {i} zombiemen to the left" for i in range(b)]
    gen = torch.Generator(device=device).manual_seed(0)
    cpu_gen = torch.Generator().manual_seed(0)
    opt = make_optimizer(dit, text, cfg)
    ema = EMA(dit)
    first = args.batch_size[0]
    drawn = {"latents": x0[:first], "actions": actions[:first], "captions": captions[:first]}

    model = dit

    def step():  # what the trainer does per step after drawing the batch
        optimisation_step(model, text, cond, opt, drawn, cfg, gen, cpu_gen)
        ema.update(dit, 100)

    def steps_per_s(n: int = 20) -> float:
        """Back to back without a sync between steps, as the trainer runs them (host and GPU overlap)."""
        step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync(device)
        return n / (time.perf_counter() - t0)

    res: dict[str, float] = {}

    def save() -> None:
        if args.out:
            write_result(args.out, "teacher_step", args.device, vars(args), res)

    if not args.compiled_only:
        eager_parts(args, cfg, device, text, cond, drawn, actions, captions, step, steps_per_s, res)
        save()
    # Static shapes: after two sizes dynamo would otherwise switch to dynamic ones, which the trainer never sees.
    model = torch.compile(dit, dynamic=False)  # as the trainer's --compile
    for bs in args.batch_size:
        drawn.update(latents=x0[:bs], actions=actions[:bs], captions=captions[:bs])
        suffix = "" if bs == args.batch_size[0] else f"_batch{bs}"
        res["step_compiled_ms" + suffix] = timed(step, args.iters)
        res["steps_per_s_compiled" + suffix] = steps_per_s()
        res["clips_per_s_compiled" + suffix] = bs * res["steps_per_s_compiled" + suffix]
        save()
    print(json.dumps(res, indent=1))


def eager_parts(args, cfg, device, text, cond, drawn, actions, captions, step, steps_per_s, res) -> None:
    """The step's parts (text, control, VAE encode of a played batch) and the eager step, into ``res``."""
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def text_only():
        with amp:
            encode_text(text, drawn["captions"])

    def control_only():
        cond.control(drawn["actions"])

    res["text_ms"] = timed(text_only, args.iters)
    res["control_ms"] = timed(control_only, args.iters)
    vae = load_exported_vae(args.vae, device, decoder=False)
    played = {"video": torch.rand(16, 3, 4 * cfg.clip_steps + 1, 96, 128, device=device) * 2 - 1}
    played.update(actions=actions[:16], captions=captions[:16])
    encode = encode_clips(vae)
    res["encode_16_clips_ms"] = timed(lambda: encode(played), args.iters)
    res["step_eager_ms"] = timed(step, args.iters)
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)
        print(table)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
    res["steps_per_s_eager"] = steps_per_s()


if __name__ == "__main__":
    main()
