"""Stage 3: train the bidirectional Doom teacher (image-to-video, act control, captions) with flow matching.

    python -m distillation.train_teacher --vae runs/doom_vae/export --out runs/doom_teacher --workers 14 --max-minutes 9

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
import torch.nn.functional as F
from tqdm.auto import tqdm

from distillation.doom_data import clip_batches, held_out_batches
from distillation.train_vae import latent_fingerprint, load_exported_vae, read_safetensors_folder, same_latents
from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import export_step, restore_state, save_state
from distillation.training.cli import parse_config
from distillation.training.ema import EMA
from distillation.training.metrics import psnr, ssim
from distillation.training.optim import clipped_step, fused_adamw
from distillation.training.replay import ReplayBuffer
from world_model import doom
from world_model.checkpoints.text_encoders import SmallTextEncoder
from world_model.control import act_control_from_actions, default_intrinsics, pixel_rays
from world_model.dit import WanDiT
from world_model.sampling import guided, sample_unipc, shift_sigma, sigma_schedule
from world_model.streaming import MASK_CHANNELS
from world_model.transfer import to_device_async


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


# -- conditioning of a clip --------------------------------------------------------------------------------------
def image_condition(x0: torch.Tensor, noise_sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``y`` ``[B, 20, T, h, w]``: mask ones on latent frame 0 + that frame's latent (optionally noised), zeros
    for later frames (the convention the streaming generator uses with ``tail_latent=None``)."""
    b, c, t, h, w = x0.shape
    mask = torch.zeros(b, MASK_CHANNELS, t, h, w, device=x0.device, dtype=x0.dtype)
    mask[:, :, 0] = 1
    lat = torch.zeros_like(x0)
    first = x0[:, :, 0]
    if torch.is_tensor(noise_sigma) or noise_sigma > 0:
        s = torch.as_tensor(noise_sigma, device=x0.device, dtype=x0.dtype).reshape(-1, 1, 1, 1)
        first = (1 - s) * first + s * torch.randn_like(first)
    lat[:, :, 0] = first
    return torch.cat([mask, lat], dim=1)


class ClipConditioner:
    """Actions -> act control maps at the model resolution (rays computed once)."""

    def __init__(self, device: torch.device) -> None:
        cfg = doom.action_config()
        self.cfg = cfg
        self.rays = pixel_rays(
            default_intrinsics(cfg.height, cfg.width, cfg.fov_deg), cfg.height, cfg.width, (cfg.height, cfg.width)
        ).to(device)

    def control(self, actions: torch.Tensor) -> torch.Tensor:
        return act_control_from_actions(actions, self.rays, self.cfg)


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


# -- model pieces ------------------------------------------------------------------------------------------------
def build_models(device: torch.device) -> tuple[WanDiT, SmallTextEncoder]:
    dit = WanDiT(doom.dit_config()).to(device)
    text = SmallTextEncoder(doom.text_encoder_config()).to(device)
    return dit, text


def encode_text(text: SmallTextEncoder, captions: list[str]) -> torch.Tensor:
    """Captions -> ``[B, max_length, text_dim]``, zero after each caption (differentiable; the encoder trains with
    the DiT). Always the full length, as the DiT pads it anyway: a length that followed the longest caption of the
    batch changed the compiled DiT's input shape, and each new shape recompiled it."""
    feats, _ = text(captions)
    return F.pad(feats, (0, 0, 0, text.max_length - feats.shape[1]))


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


def flow_loss(
    dit: WanDiT, text: SmallTextEncoder, cond: ClipConditioner, x0, actions, captions, cfg, gen, keep_actions=None
):
    """Flow-matching loss of one batch: ``x0`` ``[B, 16, T, h, w]`` latents, ``actions`` ``[B, T - 1, 6]``,
    captions as given; ``keep_actions`` ``[B]`` bool (None: all kept) zeroes the control of the others, the null
    action of guidance (dropout is the caller's, :func:`draw_dropout`)."""
    b = x0.shape[0]
    dev = x0.device
    sigma = shift_sigma(torch.rand(b, device=dev, generator=gen), cfg.shift)
    noise = torch.randn(x0.shape, device=dev, generator=gen)
    xt = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
    y = image_condition(x0, torch.rand(b, device=dev, generator=gen) * cfg.cond_noise)
    control = cond.control(actions)
    if keep_actions is not None:
        control = control * to_device_async(keep_actions, dev).view(-1, *[1] * (control.ndim - 1))
    v = dit(xt, sigma * 1000, encode_text(text, captions), y, control)
    return F.mse_loss(v.float(), (noise - x0).float())


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


def make_optimizer(dit: WanDiT, text: SmallTextEncoder, cfg: TeacherTrainConfig) -> torch.optim.AdamW:
    """AdamW over the DiT and the text encoder (fused: :func:`optimisation_step` skips non-finite updates)."""
    return fused_adamw([*dit.parameters(), *text.parameters()], cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def sample_clip(
    dit,
    text,
    cond,
    first_latent_clip,
    actions,
    captions,
    steps: int,
    guidance: float,
    shift: float,
    seed: int = 0,
    guide_actions: bool = False,
    solver: Callable = sample_unipc,
    guidance_interval: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Teacher sampling of a whole clip given the real first frame and the actions: latents ``[B, 16, T, h, w]``.

    Guidance contrasts the caption with "" and, with ``guide_actions`` (for a teacher trained with action
    dropout, :func:`guides_actions`), the actions with none: it then strengthens the motion the actions ask for.
    ``solver``: :func:`~world_model.sampling.sample_unipc` or another of that module's samplers;
    ``guidance_interval``: the noise levels ``(lo, hi)`` that are guided (see :func:`~world_model.sampling.guided`)."""
    x0_shape = first_latent_clip.shape
    y = image_condition(first_latent_clip)
    control = cond.control(actions)
    ctx_c = dit.prepare_context(encode_text(text, captions))
    ctx_u = dit.prepare_context(encode_text(text, [""] * len(captions)))
    ctrl = dit.prepare_control(control)
    ctrl_u = dit.prepare_control(torch.zeros_like(control)) if guide_actions else ctrl

    def v_cond(x, t):
        return dit(x, t, ctx_c, y, ctrl)

    def v_uncond(x, t):
        return dit(x, t, ctx_u, y, ctrl_u)

    g = torch.Generator(device=first_latent_clip.device).manual_seed(seed)
    noise = torch.randn(x0_shape, generator=g, device=first_latent_clip.device)
    return solver(guided(v_cond, v_uncond, guidance, guidance_interval), noise, sigma_schedule(steps, shift))


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


def latent_decoder(vae, light_decoder: str | Path = "", device: torch.device | str = "cpu"):
    """Normalised latents ``[B, 16, T, h, w]`` -> video ``[B, 3, 1 + 4(T-1), H, W]``: the light decoder in
    ``light_decoder`` if given, else the VAE's own decoder."""
    if light_decoder:
        from world_model.vae import load_light_decoder

        light = load_light_decoder(light_decoder, device).to(device).eval()
        return light.decode
    return lambda z: vae.decode(z.to(vae.dtype), chunked=False)


def export(dit: WanDiT, text: SmallTextEncoder, out: Path, step: int, metrics: dict) -> None:
    """bf16 teacher in the official sharded layout (shards <= 15 MiB) + text encoder + result.json."""
    from safetensors.torch import save_file

    from world_model.checkpoints.saving import save_checkpoint

    save_checkpoint(dit, out, max_shard_size="15MiB", dtype=torch.bfloat16, overwrite=True)
    save_file(
        {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in text.state_dict().items()},
        out / "text_encoder.safetensors",
    )
    (out / "result.json").write_text(json.dumps({"step": step, **metrics}, indent=1))


def guides_actions(folder: str | Path) -> bool:
    """Whether the teacher exported in ``folder`` learnt the no-action branch (trained with action dropout):
    only then may guidance contrast its actions with none."""
    result = Path(folder) / "result.json"
    return result.exists() and json.loads(result.read_text()).get("action_dropout", 0) > 0


def trained_on(folder: str | Path, vae_export: str | Path) -> bool:
    """Whether the teacher exported in ``folder`` was trained on ``vae_export``'s latents (its result.json records
    the VAE's :func:`latent_fingerprint`); True when it records none (exports before the record existed)."""
    result = Path(folder) / "result.json"
    return same_latents(json.loads(result.read_text()).get("vae_fingerprint") if result.exists() else None, vae_export)


def load_export(folder: str | Path, dit: WanDiT, text: SmallTextEncoder) -> int:
    from safetensors.torch import load_file

    folder = Path(folder)
    dit.load_state_dict({k: v.float() for k, v in read_safetensors_folder(folder, "diffusion_pytorch_model").items()})
    text.load_state_dict({k: v.float() for k, v in load_file(folder / "text_encoder.safetensors").items()})
    return export_step(folder)


def train(cfg: TeacherTrainConfig, batch_source=None) -> dict[str, float]:
    """Train (resuming from ``out/checkpoint.pt`` if present). ``batch_source(split, start_step)`` -> an
    iterator of batches replaces the game data (tests feed fixed batches)."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    vae = load_exported_vae(cfg.vae, device, decoder=not cfg.light_decoder)
    decode = latent_decoder(vae, cfg.light_decoder, device)
    dit, text = build_models(device)
    opt = make_optimizer(dit, text, cfg)
    ckpt_path = out / "checkpoint.pt"
    step = 0
    # A run started from an export begins with a fresh optimizer, so it warms up again from there.
    opt_start = export_step(cfg.init_from) if cfg.init_from else 0
    if not ckpt_path.exists() and cfg.init_from:
        step = load_export(cfg.init_from, dit, text)
        print(f"initialised from {cfg.init_from} (step {step}); optimizer state starts fresh")
        if not trained_on(cfg.init_from, cfg.vae):
            print(
                f"{cfg.init_from} was trained on the latents of another VAE encoder than {cfg.vae}'s: it adapts "
                "to these from here (its samples are wrong until it has)"
            )
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
