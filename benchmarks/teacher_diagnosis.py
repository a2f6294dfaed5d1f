"""Where a Doom teacher loses PSNR, measured in latent space on held-out clips (the trainer's validation clips).

Per latent frame: the real latents' spread; the error of holding the start frame (the no-motion baseline); the
error of the teacher's one-step estimate of the clean clip from pure noise (its posterior mean: how much it knows
before sampling); and, per sampler setting, the error and spread of its samples and their PSNR over video frames
1-16 (VAE decoder). Samples of a model that knows the motion land near the real latents with the real spread;
blurry ones have too little spread, unstable ones too much.

    python -m benchmarks.teacher_diagnosis --teacher checkpoints/doom_teacher --clips 4 \\
        --out benchmarks/results/eval/doom_teacher_diagnosis_cpu.json
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import write_result
from distillation.doom_data import clip_batches
from distillation.teacher import (
    ClipConditioner,
    build_models,
    encode_text,
    guides_actions,
    image_condition,
    load_export,
    sample_clip,
)
from distillation.training.metrics import psnr
from distillation.vae_export import load_exported_vae
from world_model import sampling
from world_model.doom import DoomTeacherConfig

SOLVERS = {"unipc": sampling.sample_unipc, "euler": sampling.sample_euler}


def per_frame_mse(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """``[B, C, T, h, w]`` pair -> mean squared error per latent frame."""
    return [round(v, 4) for v in ((a - b) ** 2).mean(dim=(0, 1, 3, 4)).tolist()]


def per_frame_std(x: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in x.std(dim=(0, 1, 3, 4)).tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="checkpoints/doom_teacher", help="a teacher export folder")
    ap.add_argument("--vae", default="checkpoints/doom_vae", help="the VAE export it was trained with")
    ap.add_argument("--clips", type=int, default=4, help="held-out clips (the trainer's validation clips, in order)")
    ap.add_argument("--steps", type=int, default=DoomTeacherConfig.sample_steps, help="sampler steps")
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["unipc:1:3", "unipc:3:3", "unipc:3:5", "euler:3:3"],
        help="sampler settings as solver:guidance:shift",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    device = torch.device(args.device)
    vae = load_exported_vae(args.vae, device)
    dit, text = build_models(device)
    step = load_export(args.teacher, dit, text)
    dit.eval(), text.eval()
    cond = ClipConditioner(device)
    clips = clip_batches("onthefly", args.clips, DoomTeacherConfig.clip_steps, device, split="val", workers=1, seed=777)
    try:
        batch = next(clips)
    finally:
        clips.close()
    video, actions, captions = batch["video"], batch["actions"], batch["captions"]
    res: dict = {"teacher_step": step, "guide_actions": guides_actions(args.teacher)}
    with torch.no_grad():
        x0 = vae.encode(video.to(vae.dtype), chunked=False).float()
        res["real_std"] = per_frame_std(x0)
        res["static_mse"] = per_frame_mse(x0[:, :, :1].expand_as(x0), x0)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)
        ctx = dit.prepare_context(encode_text(text, captions))
        v = dit(
            noise, torch.full((x0.shape[0],), 1000.0, device=device), ctx, image_condition(x0), cond.control(actions)
        )
        res["one_step_mean_mse"] = per_frame_mse(noise - v, x0)
        res["samples"] = {}
        for setting in args.settings:
            solver, guidance, shift = setting.split(":")
            lat = sample_clip(
                dit,
                text,
                cond,
                x0,
                actions,
                captions,
                args.steps,
                float(guidance),
                float(shift),
                guide_actions=res["guide_actions"],
                solver=SOLVERS[solver],
            )
            gen = vae.decode(lat, chunked=False).float()
            res["samples"][setting] = {
                "mse": per_frame_mse(lat, x0),
                "std": per_frame_std(lat),
                "std_per_clip_max": [round(v, 4) for v in lat.std(dim=(1, 3, 4)).max(dim=0).values.tolist()],
                "psnr_frames_1_16": round(psnr(gen[:, :, 1:17], video[:, :, 1:17].float()).mean().item(), 3),
            }
            print(setting, res["samples"][setting])
    print({k: v for k, v in res.items() if k != "samples"})
    if args.out:
        write_result(args.out, "teacher_diagnosis", args.device, vars(args), res)


if __name__ == "__main__":
    main()
