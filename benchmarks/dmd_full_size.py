"""One DMD iteration at full size on ONE GPU: does ``distillation.dmd``'s update fit, and how long does it take?

    python -m benchmarks.dmd_full_size --shape lingbot --frames 21 --window 1 --out out/dmd.json  # fits one H100
    python -m benchmarks.dmd_full_size --shape tiny                                              # CPU smoke run

The networks are those of ``distillation.dmd`` with LoRA (``--critic-lora R --student-lora R``): ONE frozen bf16
base (the teacher, random weights) shared by the student and the critic, each a set of rank-R adapters on it,
gradient checkpointing on. One iteration is what the trainer does per update with ``--critic-rollouts 1``:

1. the student's self-rollout of ``--frames`` latent frames (``distillation.dmd.rollout.self_rollout``: frame by
   frame through the KV cache, each stopping at the drawn exit step; the last ``--window`` frames, all by default,
   with gradients), the DMD loss on those against the teacher (CFG) and the critic
   (``distillation.dmd.train.generator_loss``), backward, the adapters' step. Each frame with gradients keeps
   the cache frames it attended to for its backward, as copies shared with the other such frames
   (``KVCache.frozen``): about the window once plus one frame per frame with gradients (1.19 GiB per latent frame
   at LingBot size), which is what bounds ``--window`` on one GPU;
2. ``--critic-steps`` flow-matching updates of the critic's adapters on that detached rollout (``critic_loss``).

What stands in for the full-size conditioning (the iteration's cost does not depend on it): the caption features
are random ``[B, 512, 4096]`` tensors of umT5-XXL's shape (the text encoder runs once per prompt, outside the
update), the camera control a random Plücker map of LingBot's 6 channels. Records seconds per phase, the peak GPU
memory of each, and the memory plan (base weights, adapters + their AdamW states, KV cache, the rest: activations).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch import nn

from benchmarks.common import sync, write_result
from benchmarks.dit_stream import random_model
from distillation.dmd.common import stream_config
from distillation.dmd.models import Teacher, make_critic, make_student
from distillation.dmd.rollout import Conditions
from distillation.dmd.train import DMDConfig, critic_loss, generator_loss
from distillation.training.lora import add_lora, lora_parameters
from distillation.training.optim import clipped_step, fused_adamw
from world_model.config import WanDiTConfig

SHAPES = {
    "lingbot": WanDiTConfig(control_dim=6),  # the 18.5B expert with its camera layers
    "wan-1.3b": WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, control_dim=6),
    "tiny": WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, control_dim=6, text_dim=32, text_len=8),
}


class FixedCaptionFeatures(nn.Module):
    """Stands in for the text encoder: the same random features ``[1, L, text_dim]`` for every caption."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("features", features)
        self.max_length = features.shape[1]

    def forward(self, captions: list[str]) -> tuple[torch.Tensor, None]:
        return self.features.expand(len(captions), -1, -1), None


@dataclasses.dataclass
class FixedControl:
    """Stands in for the action conditioner: ``control(actions [B, n, 6])`` -> the first ``1 + n`` frames of a
    fixed control map ``[B, C, 1 + N, h, w]``."""

    maps: torch.Tensor

    def control(self, actions: torch.Tensor) -> torch.Tensor:
        return self.maps[:, :, : 1 + actions.shape[1]]


def gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def peak(on_cuda: bool) -> float:
    """The peak GPU memory since the last reset, GiB (0 off CUDA)."""
    return gib(torch.cuda.max_memory_allocated()) if on_cuda else 0.0


def run(args) -> dict:
    device = args.device
    on_cuda = torch.device(device).type == "cuda"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    cfg = SHAPES[args.shape]
    h, w = args.height // 8, args.width // 8
    t0 = time.perf_counter()
    base = random_model(cfg, device, dtype).requires_grad_(False)  # the frozen base: never trained here
    sync(device)
    base_gib = gib(sum(p.numel() * p.element_size() for p in base.parameters()))
    g = torch.Generator(device=device).manual_seed(0)
    b, n = args.batch_size, args.frames
    window = args.window or n  # frames with gradients
    feats = torch.randn(1, cfg.text_len, cfg.text_dim, device=device, generator=g, dtype=dtype)
    maps = torch.randn(b, cfg.control_dim * cfg.control_patch**2, 1 + n, h, w, device=device, generator=g)
    teacher = Teacher(base, FixedCaptionFeatures(feats), FixedControl(maps), 0, None, guide_actions=True)
    cond = Conditions(
        first_latent=torch.randn(b, 16, 1, h, w, device=device, generator=g),
        control=maps,
        context=feats.expand(b, -1, -1),
        actions=torch.zeros(b, n, 6, device=device),
        captions=["a prompt"] * b,
        seeds=list(range(b)),
    )
    dcfg = DMDConfig(
        window=window,
        rollout_frames=n,
        guidance=args.guidance,
        window_frames=args.cache_window,
        grad_checkpointing=True,
    )
    student = make_student(teacher, share=True)
    student.requires_grad_(False)
    critic = make_critic(teacher, student, "teacher", lora=args.rank)
    add_lora(student, args.rank)
    for m in (student, critic):
        m.gradient_checkpointing = True
    opt_g = fused_adamw(lora_parameters(student), 2e-5, betas=(0.0, 0.999))
    opt_c = fused_adamw(lora_parameters(critic), 4e-5, betas=(0.0, 0.999))
    adapters = sum(p.numel() for p in (*lora_parameters(student), *lora_parameters(critic)))
    stream = stream_config(dcfg)
    setup_s = time.perf_counter() - t0
    print(f"{args.shape}: base {base_gib:.1f} GiB ({dtype}), adapters {adapters / 1e6:.1f}M, set up in {setup_s:.1f} s")

    iterations = []

    def autocast():
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=on_cuda)

    for it in range(args.iterations):
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        rec: dict = {"iteration": it}
        gen = torch.Generator(device=device).manual_seed(it)
        exit_step = it % len(stream.schedule.timesteps)
        t = time.perf_counter()
        with autocast():
            loss, stats, (wcond, clip) = generator_loss(student, teacher, critic, stream, cond, dcfg, gen, exit_step)
            loss.backward()
        clipped_step(opt_g, 1.0)
        opt_g.zero_grad(set_to_none=True)
        sync(device)
        rec.update(generator_s=time.perf_counter() - t, generator_peak_gib=peak(on_cuda), dmd_loss=float(loss.detach()))
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(args.critic_steps):
            with autocast():
                closs = critic_loss(critic, teacher, wcond, clip, dcfg, gen)
                closs.backward()
            clipped_step(opt_c, 1.0)
            opt_c.zero_grad(set_to_none=True)
        sync(device)
        rec.update(critic_s=time.perf_counter() - t, critic_peak_gib=peak(on_cuda), critic_loss=float(closs.detach()))
        rec["iteration_s"] = rec["generator_s"] + rec["critic_s"]
        print(
            f"iteration {it}: generator {rec['generator_s']:.1f} s (peak {rec['generator_peak_gib']:.1f} GiB), "
            f"{args.critic_steps} critic step(s) {rec['critic_s']:.1f} s (peak {rec['critic_peak_gib']:.1f} GiB)"
        )
        iterations.append(rec)
        del loss, wcond, clip, closs

    adapter_state = gib(adapters * 4 * 3)  # fp32 weights + AdamW's two moments
    kv_per_frame = gib(2 * cfg.num_layers * b * (h // 2) * (w // 2) * cfg.dim * torch.finfo(dtype).bits / 8)
    worst = max(max(r["generator_peak_gib"], r["critic_peak_gib"]) for r in iterations)
    return {
        "setup_s": setup_s,
        "iterations": iterations,
        "iteration_s_last": iterations[-1]["iteration_s"],
        "peak_gib": worst,
        "memory_plan_gib": {
            "frozen_base": base_gib,
            "adapters_and_adamw_fp32": adapter_state,
            "kv_cache_per_latent_frame": kv_per_frame,
            "kv_cache_window": kv_per_frame * (args.cache_window + 1),
            # frames copied for the recompute of the passes with gradients (KVCache.frozen), counted not measured
            "kv_kept_for_backward_estimate": kv_per_frame * min(n, window + args.cache_window + 1),
            "activations_and_rest_at_peak": worst - base_gib - adapter_state if worst else None,
        },
        "adapter_params": adapters,
        "dit_params": sum(p.numel() for p in base.parameters()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="lingbot", choices=list(SHAPES))
    ap.add_argument("--frames", type=int, default=21, help="latent frames rolled out (LingBot's clip: 21 = 81 video)")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--window", type=int, default=0, help="frames with gradients, judged by DMD (0: all)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank of student and critic adapters")
    ap.add_argument("--critic-steps", type=int, default=1, help="critic updates per generator update")
    ap.add_argument("--guidance", type=float, default=3.0, help="CFG scale of the teacher's score")
    ap.add_argument(
        "--cache-window", type=int, default=6, help="the student's rolling KV window (latent frames; the env's 6)"
    )
    ap.add_argument("--iterations", type=int, default=2, help="timed iterations (the first includes warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="benchmarks/results/dmd_full_size.json")
    args = ap.parse_args()
    if args.shape == "tiny" and args.height == 480:
        args.height, args.width, args.frames = 32, 48, min(args.frames, 3)
    results = run(args)
    write_result(args.out, "dmd_full_size", args.device, vars(args), results)
    print(f"wrote {args.out}: {results['iteration_s_last']:.1f} s per iteration, peak {results['peak_gib']:.1f} GiB")


if __name__ == "__main__":
    main()
