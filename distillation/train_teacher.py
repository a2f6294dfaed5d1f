"""Stage 3: train the bidirectional Doom teacher (image-to-video, act control, captions) with flow matching.

    python -m distillation.train_teacher --vae runs/doom_vae/export --out runs/doom_teacher --workers 14 --max-minutes 9
    python -m distillation.train_teacher ... --init-from checkpoints/doom_teacher --num-layers 16   # a deeper teacher

A teacher runs only on the GPU during distillation, so it may be larger than the student: ``--num-layers`` deepens
an ``--init-from`` export with identity blocks (:mod:`world_model.dit_grow`: it starts with the export's output),
``--dim`` a whole multiple of its width widens it (Net2WiderNet, output kept up to ``--widen-noise``), and
without ``--init-from`` ``--dim`` / ``--num-heads`` / ``--ffn-dim`` size a fresh one; the export's ``config.json``
records the size, and the harness and the DMD stages read it from there.

Per step, for clips of ``clip_steps`` actions (``4n + 1`` frames, ``n + 1`` latent frames):

1. encode the clip with the frozen VAE -> ``x0`` ``[B, 16, n + 1, 12, 16]``;
2. ``y`` = mask (ones on latent frame 0) + the first latent frame, lightly noised (so the teacher does not copy
   VAE-exact context, and a student fed its own frames later finds what it was trained on);
3. control = LingBot act maps of the actions (rays of the yaw/pitch delta + WASD), identity on frame 0;
4. ``sigma`` ~ U(0, 1) shifted by ``shift``, ``x_t = (1 - sigma) x0 + sigma * noise``; loss = MSE(v, noise - x0);
5. the caption goes through the small text encoder, trained jointly; dropped to "" with ``caption_dropout``
   so the teacher also learns the unconditional score for classifier-free guidance; with ``action_dropout`` a
   clip also trains with zero control (and no caption), the null action that guidance on actions contrasts with.

Clips come from game worker processes through a GPU replay buffer of encoded latents: each played clip is
used a few times, which keeps the GPU busy with fewer game workers. Validation samples whole clips on held-out
maps (UniPC + CFG) and reports PSNR / SSIM of the first 4 latent frames (16 video frames) against the real game.
Resumable (``checkpoint.pt``, atomic); the export (``export/``) holds bf16 EMA weights in the official sharded
layout plus the text encoder, small enough to carry between machines.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from distillation.doom_data import clip_batches, held_out_batches
from distillation.teacher import (
    ClipConditioner,
    build_models,
    export,
    export_config,
    flow_loss,
    latent_decoder,
    load_export,
    sample_clip,
    trained_on,
)
from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import export_step, restore_state, save_state
from distillation.training.cli import parse_config
from distillation.training.ema import EMA
from distillation.training.metrics import psnr, ssim
from distillation.training.optim import clipped_step, fused_adamw
from distillation.training.replay import ReplayBuffer
from distillation.vae_export import latent_fingerprint, load_exported_vae
from world_model import doom
from world_model.checkpoints.text_encoders import SmallTextEncoder
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT
from world_model.dit_grow import deepen_dit, widen_dit


@dataclasses.dataclass
class TeacherTrainConfig:
    vae: str = "runs/doom_vae/export"  # the VAE export whose encoder makes the latents (stage 1's output)
    light_decoder: str = ""  # a light decoder .pt: validation decodes with it and only the VAE encoder is loaded
    out: str = "runs/doom_teacher"  # run folder: checkpoint.pt, log.jsonl, export/
    data: str = "onthefly"  # "onthefly" (game workers play while training) or a folder of collected shards
    workers: int = 4  # game worker processes (14 on the 16-core GPU box)
    clip_steps: int = 8  # actions per training clip: 4n + 1 frames, n + 1 latent frames
    batch_size: int = 64  # clips per step
    replay_clips: int = 4096  # encoded clips held on the device to draw batches from
    reuse: float = 16.0  # each stored clip is drawn about this often: encoding every played clip starved the GPU
    lr: float = 3e-4  # peak AdamW learning rate
    warmup: int = 300  # steps of linear warm-up (again after --init-from: the optimizer starts fresh)
    cooldown: float = 0.25  # fraction of --max-minutes at the end over which the rate falls to 5%
    weight_decay: float = 0.01  # AdamW weight decay
    max_steps: int = 200_000  # stop at this step (the time budget usually ends a run first)
    shift: float = doom.DoomTeacherConfig.shift  # timestep shift of the training noise levels and the sampler
    caption_dropout: float = doom.DoomTeacherConfig.caption_dropout  # share of captions trained as "" (for CFG)
    action_dropout: float = doom.DoomTeacherConfig.action_dropout  # share trained without actions nor caption
    cond_noise: float = 0.1  # up to this much noise mixed into the first-frame latent of the condition
    ema: float = 0.999  # EMA decay of the exported weights
    grad_clip: float = 1.0  # gradient norm clip
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    log_every: int = 50  # steps between log.jsonl records
    val_every: int = 2000  # steps between validations on held-out maps
    val_clips: int = 16  # held-out clips per validation
    val_steps: int = 30  # sampler steps per validation clip
    guidance: float = doom.DoomTeacherConfig.guidance_scale  # CFG scale of validation sampling
    max_minutes: float | None = None  # time budget: the run checkpoints, validates and exports before it ends
    seed: int = 0  # seed of the model init, noise and data order
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # where to train
    compile: bool = False  # torch.compile the DiT's whole training step (pays on the GPU)
    init_from: str = ""  # an export folder to start from when there is no checkpoint (next session)
    # The DiT's size; 0 keeps the --init-from export's (else the Doom teacher's: 8 layers of width 256, 4 heads,
    # FFN 1024). A teacher trains on the GPU only and never ships, so it may be larger than the student.
    num_layers: int = 0  # depth; above an --init-from export's, it is deepened with identity blocks (output kept)
    dim: int = 0  # width; a whole multiple of an --init-from export's widens it (heads and FFN grow with it)
    num_heads: int = 0  # attention heads
    ffn_dim: int = 0  # FFN hidden width
    widen_noise: float = 1e-3  # relative noise that lets the copies of a widened export learn apart


# -- data: game workers -> encoded latents in a GPU replay buffer ------------------------------------------------
def encode_clips(vae) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replay transform: a batch of played clips -> normalised latents (bf16, to halve the buffer), actions and
    captions."""

    def transform(batch: dict[str, Any]) -> dict[str, Any]:
        kind = batch["video"].device.type
        with torch.autocast(kind, torch.bfloat16, enabled=kind == "cuda"):
            z = vae.encode(batch["video"].to(vae.dtype), chunked=False).to(torch.bfloat16)
        return {"latents": z, "actions": batch["actions"], "captions": batch["captions"]}

    return transform


def draw_dropout(
    captions: list[str], cfg: TeacherTrainConfig, generator: torch.Generator
) -> tuple[list[str], torch.Tensor]:
    """The unconditional branches of guidance, drawn per clip: ``(captions with dropped ones "", keep_actions
    [B] bool)``. A clip without actions also loses its caption, so the model learns the fully unconditional
    score that guidance on actions and caption subtracts. Drawn on the CPU: reading a GPU draw back would stall
    the training loop every step."""
    n = len(captions)
    no_actions = torch.rand(n, generator=generator) < cfg.action_dropout
    no_caption = (torch.rand(n, generator=generator) < cfg.caption_dropout) | no_actions
    return ["" if d else c for c, d in zip(captions, no_caption.tolist())], ~no_actions


def optimisation_step(dit, text, cond, opt, drawn, cfg, gen, cpu_gen) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching update on a drawn batch (``latents``, ``actions``, ``captions``; see :func:`flow_loss`).

    Returns ``(loss, grad_norm)`` as device tensors. Nothing here reads the GPU back, so the host queues the next
    step while the GPU still runs this one; the trainer reads the two values only when it logs."""
    captions, keep_actions = draw_dropout(drawn["captions"], cfg, cpu_gen)
    kind = drawn["latents"].device.type
    with torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda"):
        x0 = drawn["latents"].float()
        loss = flow_loss(dit, text, cond, x0, drawn["actions"], captions, cfg, gen, keep_actions)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clipped_step(opt, cfg.grad_clip)
    return loss.detach(), grad_norm


ARCH_FIELDS = ("num_layers", "dim", "num_heads", "ffn_dim")


def teacher_config(cfg: TeacherTrainConfig) -> WanDiTConfig:
    """The DiT config this run trains: the ``--init-from`` export's (else the Doom teacher's) with the size
    fields of ``cfg`` that are set. An export grows by whole factors of its width (heads and FFN with it) and by
    layers (:mod:`world_model.dit_grow`), never shrinks: that would change its output."""
    base = export_config(cfg.init_from) if cfg.init_from else doom.dit_config()
    asked = {f: getattr(cfg, f) for f in ARCH_FIELDS if getattr(cfg, f)}
    if cfg.init_from:
        factor = asked.get("dim", base.dim) / base.dim
        whole = max(int(factor), 1)
        grown = dataclasses.replace(
            base, dim=base.dim * whole, num_heads=base.num_heads * whole, ffn_dim=base.ffn_dim * whole
        )
        off = {f: (getattr(grown, f), v) for f, v in asked.items() if f != "num_layers" and v != getattr(grown, f)}
        if factor != whole or off:
            raise ValueError(
                f"--init-from {cfg.init_from} ({base.dim} wide, {base.num_heads} heads, FFN {base.ffn_dim}) can "
                f"only grow by a whole factor of its width, heads and FFN together; asked {asked}"
                + (f" (expected {off})" if off else "")
                + ". Or drop --init-from to train a fresh teacher of any size"
            )
        if asked.get("num_layers", base.num_layers) < base.num_layers:
            raise ValueError(
                f"--num-layers {asked['num_layers']} is below the {base.num_layers} layers of --init-from "
                f"{cfg.init_from}: a teacher can be deepened, not cut"
            )
        return dataclasses.replace(grown, num_layers=asked.get("num_layers", base.num_layers))
    return dataclasses.replace(base, **asked)  # WanDiTConfig refuses a width its heads do not divide


def start_from_export(cfg: TeacherTrainConfig, dit: WanDiT, text: SmallTextEncoder) -> tuple[WanDiT, int]:
    """Load ``--init-from`` into the run's models, growing the export's DiT to ``dit``'s size when it is smaller
    (wider first, :func:`~world_model.dit_grow.widen_dit`, then deeper, :func:`~world_model.dit_grow.deepen_dit`);
    ``(dit, the export's step)``."""
    exported = WanDiT(export_config(cfg.init_from)).to(dit.device)
    step = load_export(cfg.init_from, exported, text)
    old, new = exported.cfg, dit.cfg
    if old.dim < new.dim:
        print(f"widening {cfg.init_from} from {old.dim} to {new.dim} (noise {cfg.widen_noise})")
        exported = widen_dit(exported, new.dim // old.dim, noise=cfg.widen_noise, seed=cfg.seed)
    if old.num_layers < new.num_layers:
        print(f"deepening {cfg.init_from} from {old.num_layers} to {new.num_layers} layers")
        exported = deepen_dit(exported, new.num_layers)
    return exported, step


def make_optimizer(dit: WanDiT, text: SmallTextEncoder, cfg: TeacherTrainConfig) -> torch.optim.AdamW:
    """AdamW over the DiT and the text encoder (fused: :func:`optimisation_step` skips non-finite updates)."""
    return fused_adamw([*dit.parameters(), *text.parameters()], cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def validate(dit, text, cond, vae, decode, batch, cfg) -> dict[str, float]:
    """PSNR / SSIM of teacher clips vs the real game on held-out maps, over the first 4 latent frames.

    ``batch``: the same held-out clips at every validation of a run (fresh clips each time made the numbers
    swing by 4 dB with the clips, not the model). ``decode`` (normalised latents -> video) is the VAE decoder or
    the light decoder; ``val_decoder_psnr`` is its reconstruction of the real clips, the ceiling of the
    teacher's scores."""
    video = batch["video"][: cfg.val_clips]
    with torch.autocast(video.device.type, torch.bfloat16, enabled=video.device.type == "cuda"):
        x0 = vae.encode(video.to(vae.dtype), chunked=False).float()
        lat = sample_clip(
            dit,
            text,
            cond,
            x0,
            batch["actions"][: cfg.val_clips],
            batch["captions"][: cfg.val_clips],
            cfg.val_steps,
            cfg.guidance,
            cfg.shift,
            guide_actions=cfg.action_dropout > 0,
        )
        gen = decode(lat).float()
        rec = decode(x0).float()
    n = min(17, video.shape[2])  # latent frames 0..4 = video frames 0..16
    p = psnr(gen[:, :, 1:n], video[:, :, 1:n].float())
    return {
        "val_psnr_16": p.mean().item(),
        "val_ssim_16": ssim(gen[:, :, 1:n], video[:, :, 1:n].float()).mean().item(),
        "val_psnr_all": psnr(gen[:, :, 1:], video[:, :, 1:].float()).mean().item(),
        "val_decoder_psnr": psnr(rec, video.float()).mean().item(),
    }


def train(cfg: TeacherTrainConfig, batch_source=None) -> dict[str, float]:
    """Train (resuming from ``out/checkpoint.pt`` if present). ``batch_source(split, start_step)`` -> an
    iterator of batches replaces the game data (tests feed fixed batches)."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    vae = load_exported_vae(cfg.vae, device, decoder=not cfg.light_decoder)
    decode = latent_decoder(vae, cfg.light_decoder, device)
    dit, text = build_models(device, teacher_config(cfg))
    ckpt_path = out / "checkpoint.pt"
    step = 0
    # A run started from an export begins with a fresh optimizer, so it warms up again from there.
    opt_start = export_step(cfg.init_from) if cfg.init_from else 0
    if not ckpt_path.exists() and cfg.init_from:
        dit, step = start_from_export(cfg, dit, text)
        print(f"initialised from {cfg.init_from} (step {step}); optimizer state starts fresh")
        if not trained_on(cfg.init_from, cfg.vae):
            print(
                f"{cfg.init_from} was trained on the latents of another VAE encoder than {cfg.vae}'s: it adapts "
                "to these from here (its samples are wrong until it has)"
            )
    opt = make_optimizer(dit, text, cfg)
    ema_dit, ema_text = EMA(dit, cfg.ema, start_step=step), EMA(text, cfg.ema, start_step=step)
    parts = {"dit": dit, "text": text, "optimizer": opt, "ema_dit": ema_dit, "ema_text": ema_text}
    resumed = restore_state(ckpt_path, parts, dataclasses.asdict(cfg), ("clip_steps",), device)
    if resumed is not None:
        step = resumed
        print(f"resumed from step {step}")
    # The whole training forward and backward as one graph (WanDiT.compile() is the streaming form).
    model = torch.compile(dit) if cfg.compile else dit
    cond = ClipConditioner(device)
    if batch_source is None:

        def batch_source(split: str, start: int):
            if split == "train":
                return clip_batches(cfg.data, 16, cfg.clip_steps, device, workers=cfg.workers, seed=cfg.seed + start)
            return held_out_batches(cfg.data, cfg.val_clips, cfg.clip_steps, device, seed=777)

    val_batches = batch_source("val", 0)
    try:
        val_batch = next(val_batches)
    finally:
        if hasattr(val_batches, "close"):
            val_batches.close()
    train_batches = batch_source("train", step)
    replay = ReplayBuffer(train_batches, cfg.replay_clips, device, encode_clips(vae), reuse=cfg.reuse)
    try:
        gen = torch.Generator(device=device).manual_seed(cfg.seed + step)
        cpu_gen = torch.Generator().manual_seed(cfg.seed + step)
        budget, log = TimeBudget(cfg.max_minutes), JsonlLog(out / "log.jsonl")
        budget.mark(step)

        def save() -> None:
            save_state(ckpt_path, step, dataclasses.asdict(cfg), parts)

        bar = tqdm(total=cfg.max_steps, initial=step, desc="teacher", dynamic_ncols=True)
        metrics: dict[str, float] = {}
        skipped = torch.zeros((), device=device)  # non-finite updates skipped this run, read only when logging
        while step < cfg.max_steps and not budget.expired():
            replay.refill(min_size=cfg.batch_size * 4)  # the buffer caps this at its capacity
            lr = learning_rate(cfg.lr, step, warmup=cfg.warmup, budget=budget, cooldown=cfg.cooldown, start=opt_start)
            for g in opt.param_groups:
                g["lr"] = lr
            drawn = replay.sample(cfg.batch_size, cpu_gen)
            loss, gnorm = optimisation_step(model, text, cond, opt, drawn, cfg, gen, cpu_gen)
            skipped += ~torch.isfinite(gnorm)
            step += 1
            ema_dit.update(dit, step)
            ema_text.update(text, step)
            bar.update(1)
            if step % cfg.log_every == 0:
                rec = {"step": step, "loss": loss.item(), "grad_norm": float(gnorm), "lr": lr}
                rec["skipped_steps"] = int(skipped.item())
                rec.update(clips_seen=replay.seen, steps_per_s=budget.steps_per_s(step), elapsed_s=budget.elapsed)
                log.write(**rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", clips=replay.seen)
            if step % cfg.val_every == 0:
                metrics = validate(ema_dit.model, ema_text.model, cond, vae, decode, val_batch, cfg)
                log.write(step=step, **metrics)
                print(json.dumps({"step": step, **metrics}))
            if step % cfg.checkpoint_every == 0:
                save()
        save()
        bar.close()
        metrics = validate(ema_dit.model, ema_text.model, cond, vae, decode, val_batch, cfg)
        log.write(step=step, **metrics)
        export(
            ema_dit.model,
            ema_text.model,
            out / "export",
            step,
            {**metrics, "action_dropout": cfg.action_dropout, "vae_fingerprint": latent_fingerprint(cfg.vae)},
        )
        print(json.dumps({"step": step, **metrics}))
        return {"step": step, **metrics}
    finally:  # stop the game workers now, not at the interpreter's exit
        replay.close()


if __name__ == "__main__":
    train(parse_config(TeacherTrainConfig, __doc__))
