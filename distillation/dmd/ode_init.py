"""Stage 2, ``ode-init``: the block-causal student regresses onto the teacher's ODE trajectories.

Per update, for each clip of a micro-batch and each latent frame ``i = 1 .. T-1``, one of the student's K noise
levels ``k`` is drawn; the student, streaming with the KV cache, sees the teacher's trajectory state of frame
``i`` at level ``k`` while the cache holds the teacher's clean frames ``0 .. i-1`` (:func:`teacher_forced`), and
regresses its ``x0`` estimate onto the teacher's final frame ``i``. This gives DMD a student that already maps
noise to plausible frames in four steps (CausVid, Self-Forcing both start this way).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distillation.dmd.common import (
    STREAM_BEFORE,
    STREAM_SETTINGS,
    StageConfig,
    Validation,
    after_step,
    conditions_of,
    draw_rows,
    export_student,
    finish,
    init_parallel,
    provenance,
    step_generator,
    stream_config,
)
from distillation.dmd.losses import regression_loss
from distillation.dmd.models import check_latents, load_teacher, make_student, student_config_from
from distillation.dmd.pairs import KIND as PAIRS
from distillation.dmd.rollout import teacher_forced
from distillation.dmd.shards import read_set
from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import restore_state
from distillation.training.ema import EMA
from distillation.training.optim import clipped_step, fused_adamw


@dataclasses.dataclass
class ODEInitConfig(StageConfig):
    pairs: str = "runs/dmd/pairs"  # the teacher's ODE pairs (python -m distillation.dmd ode-pairs)
    student_config: str = ""  # a config.json (or export folder) for a student of another size; "" = the teacher's
    lr: float = 1e-4  # peak AdamW learning rate


def ode_batch(teacher, tensors, captions, sigmas, cfg, step: int, micro: int):
    """Micro-batch ``micro`` of ``step``: ``(conditions, noisy [B,16,n,h,w], sigma [B,n], target [B,16,n,h,w])``."""
    dev = teacher.dit.device
    rows = draw_rows(len(captions), cfg.batch_size, cfg.seed, step, micro)
    states = tensors["states"][rows].to(dev).float()  # [B, K, 16, T, h, w]
    target = tensors["x0"][rows].to(dev).float()[:, :, 1:]
    b, k, _, t = states.shape[:4]
    level = torch.randint(0, k, (b, t - 1), generator=step_generator(cfg.seed, step, micro, torch.device("cpu")))
    frames = torch.arange(1, t)
    noisy = states[torch.arange(b)[:, None], level.to(dev), :, frames[None, :]]  # [B, n, 16, h, w]
    sigma = torch.tensor(sigmas, device=dev)[level.to(dev)]
    cond = conditions_of(teacher, tensors, captions, rows, t - 1, cfg.seed)
    return cond, noisy.permute(0, 2, 1, 3, 4), sigma, target


def train(cfg: ODEInitConfig) -> dict[str, float]:
    """Run (or resume) ODE init; the EMA student is exported to ``<out>/ode_init/export``."""
    par, device = init_parallel(cfg.device, cfg.parallel)
    torch.manual_seed(cfg.seed)
    teacher = load_teacher(cfg.teacher, device)
    tensors, captions, meta = read_set(cfg.pairs, PAIRS)
    check_latents(f"the teacher {cfg.teacher}", teacher.fingerprint, meta.get("vae_fingerprint"), cfg.pairs)
    stream = stream_config(cfg)
    sigmas = list(stream.schedule.sigmas)
    if [round(s, 6) for s in meta["sigmas"]] != [round(s, 6) for s in sigmas]:
        raise ValueError(
            f"{cfg.pairs} holds states at noise levels {meta['sigmas']}, but this student's schedule is {sigmas} "
            "(--timesteps / --shift): make the pairs with the same schedule"
        )
    if device.type == "cuda":  # the whole set fits the GPU (about 1 GB for 4,096 clips): no host copies per step
        tensors = {k: v.to(device) for k, v in tensors.items()}
    student = make_student(teacher, student_config_from(cfg.student_config))
    student.gradient_checkpointing = cfg.grad_checkpointing
    ema = EMA(student, cfg.ema)
    par.shard(student, ema.model, teacher.dit)  # --parallel fsdp: shards (the EMA's match the student's)
    opt = fused_adamw(student.parameters(), cfg.lr, betas=(0.9, 0.999))
    parts = {"student": par.state_of(student), "optimizer": par.state_of(student, opt), "ema": par.state_of(ema.model)}
    out = Path(cfg.out) / "ode_init"
    ckpt = out / "checkpoint.pt"
    where = "cpu" if par.sharded else device  # each process keeps only its shards of what it reads
    same = (*STREAM_SETTINGS, "student_config")
    step = restore_state(ckpt, parts, dataclasses.asdict(cfg), same, where, older=STREAM_BEFORE) or 0
    budget, log = TimeBudget(cfg.max_minutes), JsonlLog(out / "log.jsonl")
    budget.mark(step)
    validation = Validation(cfg, teacher, stream, par, log)
    autocast = validation.autocast
    bar = tqdm(total=cfg.max_steps, initial=step, desc="ode init", dynamic_ncols=True, disable=not par.main)

    while step < cfg.max_steps and not budget.expired():
        lr = learning_rate(cfg.lr, step, warmup=cfg.warmup, budget=budget, cooldown=cfg.cooldown)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        total = 0.0
        micros = par.micro_batches(cfg.accumulate)
        for j, micro in enumerate(micros):
            par.sync_gradients([student], j == len(micros) - 1)  # fsdp: reduce-scatter after the last only
            cond, noisy, sigma, target = ode_batch(teacher, tensors, captions, sigmas, cfg, step, micro)
            with torch.autocast(**autocast):
                loss = regression_loss(teacher_forced(student, stream, cond, noisy, sigma, target), target)
            loss.backward()
            total += loss.detach()
        par.average_gradients([student], cfg.accumulate * par.world)
        gnorm = clipped_step(opt, cfg.grad_clip)
        step += 1
        ema.update(student, step)
        bar.update(1)
        if par.main and step % cfg.log_every == 0:
            rec = {"step": step, "loss": float(total) / cfg.accumulate, "grad_norm": float(gnorm), "lr": lr}
            rec.update(steps_per_s=budget.steps_per_s(step), elapsed_s=budget.elapsed)
            log.write(**rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
        after_step(cfg, step, par, validation, ema.model, ckpt, parts)
    bar.close()
    metrics = finish(cfg, step, par, validation, ema.model, ckpt, parts)
    final = par.full_model(ema.model)  # all processes gather under fsdp
    if par.main:
        export_student(final, out / "export", step, {"stage": "ode-init", **metrics, **provenance(teacher, cfg)})
    return {"step": step, **metrics}
