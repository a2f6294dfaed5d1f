"""Stage 1, ``ode-pairs``: the teacher's many-step ODE trajectories, kept at the student's noise levels.

For each condition (real start latent, the first ``clip_steps`` real actions, caption) the frozen bidirectional
teacher samples a whole clip with UniPC and classifier-free guidance on caption and actions (its default
sampler). The solver's noise-level list is the teacher's ``steps``-step schedule with the student's few-step
levels merged in, so the trajectory passes exactly through them; a shard (``distillation.dmd.shards``) keeps:

* ``states`` ``[N, K, 16, T, h, w]`` bf16: the clip at each of the student's K noise levels (the first is pure
  noise), ``sigmas`` ``[K]`` in the set's metadata;
* ``x0`` ``[N, 16, T, h, w]`` bf16: the final sample; ``first_latent``, ``actions``, captions as in the conditions.

Resumable: rerunning continues after the last complete shard; a shard that fails its check is rebuilt.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distillation.dmd.common import student_schedule
from distillation.dmd.conditions import KIND as CONDITIONS
from distillation.dmd.models import check_latents, load_teacher
from distillation.dmd.shards import ShardSet, read_set
from distillation.teacher import sample_clip
from world_model.sampling import UniPC, sigma_schedule

KIND = "pairs"


@dataclasses.dataclass
class PairsConfig:
    teacher: str = "checkpoints/doom_teacher"  # the teacher export folder
    conditions: str = "runs/dmd/conditions"  # conditions set to sample from (training maps)
    out: str = "runs/dmd/pairs"  # the pair set's folder (resumes)
    clips: int = 4096  # clips to sample (at most the conditions' count)
    clip_steps: int = 8  # actions per clip: the teacher's training length (T = clip_steps + 1 latent frames)
    steps: int = 50  # UniPC steps of the teacher (its default sampler)
    guidance: float = 3.0  # classifier-free guidance scale (caption, and actions if the teacher learnt none)
    timesteps: str = "1000,750,500,250"  # the student's few-step list before the shift
    shift: float = 3.0  # the teacher's shift (its schedule and the student's list)
    batch_size: int = 256  # clips sampled at once
    shard_clips: int = 1024  # clips per shard
    seed: int = 0  # noise seed (shard i uses seed + i)
    max_minutes: float | None = None  # time budget: no new shard starts after it (a rerun continues the set)
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # where the teacher runs


def merged_sigmas(steps: int, shift: float, student: tuple[float, ...]) -> tuple[torch.Tensor, list[int]]:
    """The teacher's schedule with the student's noise levels merged in, and where each of those sits in it."""
    base = [float(s) for s in sigma_schedule(steps, shift)]
    merged = sorted(set(base) | set(student), reverse=True)
    return torch.tensor(merged, dtype=torch.float64), [merged.index(s) for s in student]


@torch.no_grad()
def sample_pairs(teacher, cond_tensors, captions, rows, cfg: PairsConfig, seed: int, sigmas, where):
    """Teacher trajectories of ``rows`` of the conditions: ``(states [B, K, 16, T, h, w], x0 [B, 16, T, h, w])``;
    ``sigmas`` is the solver's noise-level list and ``where`` the indices of the kept ones (:func:`merged_sigmas`)."""
    dev = teacher.dit.device
    first = cond_tensors["first_latent"][rows].to(dev).float()
    actions = cond_tensors["actions"][rows, : cfg.clip_steps].to(dev).float()
    b, c, _, h, w = first.shape
    clip = torch.zeros(b, c, cfg.clip_steps + 1, h, w, device=dev)
    clip[:, :, :1] = first
    kept: dict[int, torch.Tensor] = {}

    def solver(fn, noise, sig):
        def keep(i, s, x):
            if i in where:
                kept[i] = x.to(torch.bfloat16)

        return UniPC(sig).sample(fn, noise, callback=keep)

    with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
        x0 = sample_clip(
            teacher.dit,
            teacher.text,
            teacher.cond,
            clip,
            actions,
            [captions[i] for i in rows.tolist()],
            cfg.steps,
            cfg.guidance,
            cfg.shift,
            seed,
            guide_actions=teacher.guide_actions,
            solver=solver,
            sigmas=sigmas,
        )
    states = torch.stack([kept[i] for i in where], dim=1)
    return states, x0.to(torch.bfloat16)


def build(cfg: PairsConfig) -> Path:
    """Sample until the set in ``cfg.out`` has ``cfg.clips`` clips (or every condition is used)."""
    device = torch.device(cfg.device)
    cond_tensors, captions, cond_meta = read_set(cfg.conditions, CONDITIONS)
    teacher = load_teacher(cfg.teacher, device)
    check_latents(f"the teacher {cfg.teacher}", teacher.fingerprint, cond_meta.get("vae_fingerprint"), cfg.conditions)
    if cond_tensors["actions"].shape[1] < cfg.clip_steps:
        raise ValueError(
            f"{cfg.conditions} holds {cond_tensors['actions'].shape[1]} actions per clip, fewer than {cfg.clip_steps}"
        )
    student_sigmas = list(student_schedule(cfg.timesteps, cfg.shift).sigmas)
    sigmas, where = merged_sigmas(cfg.steps, cfg.shift, tuple(student_sigmas))
    meta = {
        "teacher_step": teacher.step,
        "vae_fingerprint": teacher.fingerprint or cond_meta.get("vae_fingerprint"),
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "guide_actions": teacher.guide_actions,
        "shift": cfg.shift,
        "sigmas": student_sigmas,
        "clip_steps": cfg.clip_steps,
    }
    out = ShardSet.open(cfg.out, KIND, meta)
    for name in out.drop_bad():
        print(f"rebuilding {Path(cfg.out) / name}: it failed its check")
    total = min(cfg.clips, len(captions))
    bar = tqdm(total=total, initial=out.rows, desc="ode pairs", dynamic_ncols=True)
    t0 = time.monotonic()
    while out.rows < total:
        if cfg.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.max_minutes:
            print(f"ode pairs: time budget of {cfg.max_minutes} min spent at {out.rows} clips; rerun to continue")
            break
        lo = out.rows
        n = min(cfg.shard_clips, total - lo)
        parts = []
        for b in range(lo, lo + n, cfg.batch_size):
            rows = torch.arange(b, min(b + cfg.batch_size, lo + n))
            parts.append(sample_pairs(teacher, cond_tensors, captions, rows, cfg, cfg.seed + b, sigmas, where))
            bar.update(len(rows))
        rows = torch.arange(lo, lo + n)
        out.add(
            {
                "states": torch.cat([p[0] for p in parts]).cpu(),
                "x0": torch.cat([p[1] for p in parts]).cpu(),
                "first_latent": cond_tensors["first_latent"][rows],
                "actions": cond_tensors["actions"][rows, : cfg.clip_steps].float(),
            },
            [captions[i] for i in rows.tolist()],
        )
    bar.close()
    return out.folder
