"""Stage 1: train the small Wan-style causal VAE on Doom clips.

    python -m distillation.train_vae --out runs/doom_vae --data onthefly --workers 14 --max-minutes 9

Loss: L1 + SSIM in pixels (no pretrained perceptual networks are available offline) + a small KL on the
latent (the Wan VAE is a VAE: encoding uses the mean, so the KL only keeps the latent space smooth for the DiT).
The whole clip goes through one causal pass per step (equal to the chunked streaming passes, see the VAE tests).
At the end the per-channel mean / std of the latents are measured and stored in the exported config, so the
DiT sees unit-scale latents exactly as with Wan2.1's 16 constants. ``--freeze-encoder`` fine-tunes the decoder
of an export alone and keeps its latents and statistics, so teachers trained on them need no retraining.

``--adv-weight`` > 0 adds an adversarial term (``distillation/training/adversarial.py``): from ``--adv-start`` a
PatchGAN discriminator scores the real frames against the reconstructions, and the decoder is also trained to pass
as real, which keeps the textures the pixel losses blur away. Its losses and logits (``adv_loss``, ``adv_weight``,
``disc_loss``, ``logits_real`` / ``logits_fake``, ``disc_grad_norm``, ``disc_lr``) join ``log.jsonl``, and the
discriminator with its optimiser the checkpoint.

Resumable: ``checkpoint.pt`` in ``--out`` is written atomically every ``--checkpoint-every`` steps and when the
time budget runs out; rerunning the same command continues from it. ``export/`` (``vae*.safetensors`` + ``vae.json``
+ ``result.json``) holds whichever of the raw and EMA weights scores better on held-out maps.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distillation.doom_data import clip_batches, held_out_batches
from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import export_step, restore_state, save_state
from distillation.training.cli import parse_config
from distillation.training.ema import EMA
from distillation.training.metrics import psnr, ssim
from distillation.training.optim import clipped_step, fused_adamw
from distillation.training.replay import replayed_videos
from distillation.vae_export import export_vae, for_cuda_convs, load_exported_vae
from world_model import doom
from world_model.vae import VAEConfig, WanVAE, is_encoder_key


@dataclasses.dataclass
class VAETrainConfig:
    out: str = "runs/doom_vae"  # run folder: checkpoint.pt, log.jsonl, export/
    data: str = "onthefly"  # "onthefly" (game workers play while training) or a folder of collected shards
    workers: int = 4  # game worker processes (14 on the 16-core GPU box)
    dim: int = 32  # VAE base width (Wan2.1 uses 96)
    steps: int = 4  # actions per clip: 17 frames
    # Train on a random HxW window of each batch (e.g. "64x64"; multiples of 8): the VAE is convolutional up to
    # the attention at its 1/8 bottleneck, and a 64x64 window costs a third of a 96x128 frame. Validation and the
    # latent statistics always use whole frames.
    crop: str = ""
    batch_size: int = 16  # clips per step
    lr: float = 3e-4  # peak AdamW learning rate
    warmup: int = 200  # steps of linear warm-up (again after --init-from: the optimizer starts fresh)
    cooldown: float = 0.25  # fraction of --max-minutes at the end over which the rate falls to 5%
    # Clips held on the device and redrawn (mirrored at random) while the game workers play new ones: the workers
    # were the limit on the GPU. 0: every step takes the next played batch (bit-exact resume; tests).
    replay_clips: int = 1024
    max_steps: int = 100_000  # stop at this step (the time budget usually ends a run first)
    kl_weight: float = 1e-6  # weight of the KL term of the latent posterior
    ssim_weight: float = 0.2  # weight of the (1 - SSIM) term beside L1
    # Weight of a squared-error term beside L1. PSNR is a log of the squared error, so a last fine-tune with it
    # (decoder only) trades some of L1's sharpness for the metric the targets are set in. L1's gradient per pixel
    # is +-1 and the squared error's 2 * error, so at errors of a few hundredths it leads only at weights of ~20.
    mse_weight: float = 0.0
    ema: float = 0.999  # EMA decay (the export takes the better of raw and EMA on held-out clips)
    grad_clip: float = 1.0  # gradient norm clip
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    log_every: int = 50  # steps between log.jsonl records
    max_minutes: float | None = None  # time budget: the run checkpoints and exports before it ends
    seed: int = 0  # seed of the init and the data order
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # where to train
    compile: bool = False  # torch.compile the VAE
    channels_last: bool = True  # CUDA only: cuDNN's fast conv3d kernels are NDHWC (the batches already are)
    init_from: str = ""  # an exported VAE folder to start from when there is no checkpoint (next session)
    # Fine-tune the decoder only (needs --init-from): the encoder, and so the latents and their statistics, stay
    # bit for bit those of --init-from, so a teacher trained on them keeps working with the better decoder.
    freeze_encoder: bool = False
    # Adversarial term (distillation/training/adversarial.py): a PatchGAN discriminator scores the real frames
    # against the reconstructions, frame by frame, and the decoder is also trained to pass as real (pixel losses
    # alone blur Doom's textures; best with --freeze-encoder on a trained export). 0 is off: no discriminator is
    # built, nothing is drawn from the RNGs, and the run is the one without it, number for number. About 0.1-0.5
    # with the adaptive weight (taming-transformers, the SD VAE).
    adv_weight: float = 0.0
    # Step at which the discriminator starts learning and the term starts; at the earliest the step it is added
    # at: a run resumed from a checkpoint without it, or started from an export (--init-from), starts a fresh
    # discriminator at its step, which then warms up.
    adv_start: int = 0
    adv_warmup: int = 200  # steps from --adv-start over which the disc's rate and the term's weight rise from 0
    disc_lr: float = 1e-4  # peak AdamW learning rate of the discriminator (betas 0.5, 0.9)
    adv_loss: str = "hinge"  # GAN loss of both players: "hinge" or "nonsaturating"
    # Scale the term by taming's ratio of the pixel loss's and the GAN loss's gradient norms at the decoder's last
    # conv (--no-adv-adaptive: the fixed --adv-weight).
    adv_adaptive: bool = True
    disc_width: int = 64  # the discriminator's first width (doubling per layer, at most 8x)
    disc_layers: int = 3  # strided 4x4 layers of the discriminator: a logit per 2^N x 2^N pixels (sees 54 at 3)


def reconstruct(vae: WanVAE, video: torch.Tensor, sample: bool = True):
    """One causal pass: video [B, 3, F, H, W] -> (reconstruction, mu, logvar), unclamped for training."""
    h, _ = vae.encoder.step(video, None, keep=False)
    mu, logvar = vae.conv1(h).chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
    recon, _ = vae.decoder.step(vae.conv2(z), None, keep=False)
    return recon, mu, logvar


def vae_loss(video, recon, mu, logvar, cfg: VAETrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, terms)``; the terms are detached device tensors, read only when logging (no sync per step)."""
    err = recon - video
    l1, mse = err.abs().mean(), err.float().pow(2).mean()
    s = ssim(recon.float().clamp(-1, 1), video.float()).mean()
    kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
    loss = l1 + cfg.mse_weight * mse + cfg.ssim_weight * (1 - s) + cfg.kl_weight * kl
    return loss, {"l1": l1.detach(), "mse": mse.detach(), "ssim": s.detach(), "kl": kl.detach()}


def optimisation_step(forward, vae: WanVAE, opt, video: torch.Tensor, cfg: VAETrainConfig, adversary=None, step=0):
    """One update on ``video`` ``[B, 3, F, H, W]`` with ``forward`` (:func:`reconstruct`, maybe compiled).

    With an ``adversary`` (:class:`~distillation.training.adversarial.Adversary`) active at ``step``, the loss also
    holds its generator term, and the discriminator is then updated on ``video`` against the reconstruction; its
    terms join the others. Returns ``(loss, terms, recon, grad_norm)``, all device tensors: nothing here waits for
    the GPU."""
    kind = video.device.type
    with torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda"):
        recon, mu, logvar = forward(vae, video)
    loss, terms = vae_loss(video, recon.float(), mu, logvar, cfg)
    adversarial = adversary is not None and adversary.active(step)
    if adversarial:
        adv, adv_terms = adversary.generator_loss(recon, loss, vae.decoder.head[2].weight, step)
        loss = loss + adv
        terms.update(adv_terms)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clipped_step(opt, cfg.grad_clip)
    if adversarial:
        terms.update(adversary.discriminator_step(video, recon))
    return loss.detach(), terms, recon.detach(), grad_norm


def parse_crop(crop: str) -> tuple[int, int] | None:
    """``"HxW"`` -> ``(H, W)`` (None for ""), checked against the VAE's 8x spatial compression."""
    if not crop:
        return None
    try:
        h, w = (int(v) for v in crop.lower().split("x"))
    except ValueError:
        raise ValueError(f"--crop takes HxW, e.g. 64x64, got {crop!r}") from None
    if h <= 0 or w <= 0 or h % 8 or w % 8:
        raise ValueError(f"--crop {crop}: height and width must be positive multiples of 8 (the VAE's compression)")
    return h, w


def random_crop(video: torch.Tensor, hw: tuple[int, int] | None, gen: torch.Generator) -> torch.Tensor:
    """One random ``hw`` window of a batch ``[B, 3, F, H, W]`` (the same for every clip: a view, no copy)."""
    if hw is None:
        return video
    if hw[0] > video.shape[-2] or hw[1] > video.shape[-1]:
        raise ValueError(f"--crop {hw[0]}x{hw[1]} is larger than the {video.shape[-2]}x{video.shape[-1]} frames")
    top = int(torch.randint(0, video.shape[-2] - hw[0] + 1, (), generator=gen))
    left = int(torch.randint(0, video.shape[-1] - hw[1] + 1, (), generator=gen))
    return video[..., top : top + hw[0], left : left + hw[1]]


@torch.no_grad()
def latent_stats(vae: WanVAE, batches, num_batches: int = 8) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the encoder mean over a few batches."""
    mus = []
    for _ in range(num_batches):
        video = next(batches)["video"]
        h, _ = vae.encoder.step(video.to(vae.dtype), None, keep=False)
        mus.append(vae.conv1(h)[:, : vae.config.z_dim].float().transpose(0, 1).flatten(1))
    m = torch.cat(mus, dim=1)
    return tuple(m.mean(1).tolist()), tuple(m.std(1).clamp_min(1e-3).tolist())


def default_batches(cfg: VAETrainConfig, split: str, start_step: int):
    """Doom clips for ``split``: on the fly from game workers, or from a collected data folder."""
    if split != "train":
        return held_out_batches(cfg.data, cfg.batch_size, cfg.steps, cfg.device, seed=12345)
    return clip_batches(
        cfg.data, cfg.batch_size, cfg.steps, cfg.device, workers=cfg.workers, seed=cfg.seed + start_step
    )


def clip_source(batches, cfg: VAETrainConfig, device: torch.device, step: int):
    """``(draw, replay)``: ``draw()`` -> the next training video ``[B, 3, F, H, W]``; ``replay`` is the
    :class:`ReplayBuffer` behind it (None with ``replay_clips=0``: straight from ``batches``)."""
    if not cfg.replay_clips:
        return (lambda: next(batches)["video"]), None
    return replayed_videos(batches, cfg.replay_clips, cfg.batch_size, device, cfg.seed + step, cfg.channels_last)


def train(cfg: VAETrainConfig, batch_source=None) -> dict[str, float]:
    """Train (resuming from ``out/checkpoint.pt`` if present). ``batch_source(split, start_step)`` -> an
    iterator of batches replaces the game data (tests feed fixed batches)."""
    batch_source = batch_source or (lambda split, start: default_batches(cfg, split, start))
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    vae = WanVAE(doom.vae_config() if cfg.dim == 32 else VAEConfig(dim=cfg.dim)).to(device)
    for_cuda_convs(vae, cfg.channels_last)
    crop = parse_crop(cfg.crop)
    if cfg.freeze_encoder and not cfg.init_from:
        raise ValueError("--freeze-encoder fine-tunes the decoder of a trained VAE: name its export with --init-from")
    for name, p in vae.named_parameters():
        p.requires_grad_(not (cfg.freeze_encoder and is_encoder_key(name)))
    # Frozen weights get no gradient, so the encoder's pass records no graph and costs no backward.
    opt = fused_adamw((p for p in vae.parameters() if p.requires_grad), cfg.lr)
    ckpt_path = out / "checkpoint.pt"
    step = 0
    # A run started from an export begins with a fresh optimizer, so it warms up again from there.
    opt_start = export_step(cfg.init_from) if cfg.init_from else 0
    if not ckpt_path.exists() and cfg.init_from:
        init = load_exported_vae(cfg.init_from).state_dict()
        vae.load_state_dict(init)  # strict: names the missing / unexpected keys of a mismatched export
        step = opt_start
        print(f"initialised from {cfg.init_from} (step {step}); optimizer state starts fresh")
    ema = EMA(vae, cfg.ema, start_step=step)
    parts = {"model": vae, "optimizer": opt, "ema": ema}
    adversary = None
    if cfg.adv_weight != 0:  # off: the module is not even imported
        from distillation.training.adversarial import build_adversary

        adversary = build_adversary(cfg, device)
        parts.update(adversary.parts())
    optional = tuple(adversary.parts()) if adversary is not None else ()  # a discriminator added to a run
    config = dataclasses.asdict(cfg)
    resumed = restore_state(ckpt_path, parts, config, ("dim", "freeze_encoder"), device, optional=optional)
    if resumed is not None:
        step = resumed
        print(f"resumed from step {step}")
    if adversary is not None:
        adversary.begin(step)
    forward = torch.compile(reconstruct) if cfg.compile else reconstruct
    draw, replay = clip_source(batch_source("train", step), cfg, device, step)
    budget, log = TimeBudget(cfg.max_minutes), JsonlLog(out / "log.jsonl")

    def save() -> None:
        save_state(ckpt_path, step, dataclasses.asdict(cfg), parts)

    try:
        bar = tqdm(total=cfg.max_steps, initial=step, desc="vae", dynamic_ncols=True)
        budget.mark(step)
        crop_gen = torch.Generator().manual_seed(cfg.seed + step)
        skipped = torch.zeros((), device=device)  # non-finite updates skipped this run, read only when logging
        while step < cfg.max_steps and not budget.expired():
            video = random_crop(draw(), crop, crop_gen)
            lr = learning_rate(cfg.lr, step, warmup=cfg.warmup, budget=budget, cooldown=cfg.cooldown, start=opt_start)
            for g in opt.param_groups:
                g["lr"] = lr
            if adversary is None:
                loss, terms, recon, gnorm = optimisation_step(forward, vae, opt, video, cfg)
            else:
                disc_lr = adversary.schedule(step, budget, cfg.cooldown)
                loss, terms, recon, gnorm = optimisation_step(forward, vae, opt, video, cfg, adversary, step)
            skipped += ~torch.isfinite(gnorm)
            step += 1
            ema.update(vae, step)
            bar.update(1)
            if step % cfg.log_every == 0:
                with torch.no_grad():
                    p = psnr(recon.float().clamp(-1, 1), video).mean().item()
                rec = {"step": step, "loss": loss.item(), "psnr": p, "grad_norm": float(gnorm), "lr": lr}
                rec.update({k: v.item() for k, v in terms.items()}, skipped_steps=int(skipped.item()))
                rec["steps_per_s"] = budget.steps_per_s(step)
                if replay is not None:
                    rec["clips_played"] = replay.seen
                if adversary is not None and "disc_loss" in terms:
                    rec["disc_lr"] = disc_lr
                log.write(**rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", psnr=f"{p:.2f}")
            if step % cfg.checkpoint_every == 0:
                save()
        save()
        bar.close()
        # Score the raw and the EMA weights on the same held-out clips; export the better one with measured latent
        # statistics (early in training the average can still trail the raw weights).
        val_batches = list(itertools.islice(batch_source("val", 0), 8))
        scores = {name: evaluate(m, iter(val_batches)) for name, m in (("model", vae), ("ema", ema.model))}
        chosen = max(scores, key=lambda name: scores[name]["val_psnr"])
        final = vae if chosen == "model" else ema.model
        if cfg.freeze_encoder:  # the teacher's latents are normalised by these: keep them exactly
            init_config = json.loads((Path(cfg.init_from) / "vae.json").read_text())
            stats = (tuple(init_config["latent_mean"]), tuple(init_config["latent_std"]))
        else:
            stats = latent_stats(final, ({"video": draw()} for _ in itertools.count()))
    finally:  # stop the game workers now, not at the interpreter's exit
        if replay is not None:
            replay.close()
    export_vae(final, stats, out / "export")
    result = {
        "step": step,
        **scores[chosen],
        "exported": chosen,
        "scores": scores,
        "latent_mean_abs": float(torch.tensor(stats[0]).abs().mean()),
        "latent_std_mean": float(torch.tensor(stats[1]).mean()),
    }
    (out / "export" / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


@torch.no_grad()
def evaluate(vae: WanVAE, batches, num_batches: int = 8) -> dict[str, float]:
    """Reconstruction PSNR / SSIM of the deterministic (mean) encoding through the official chunked path."""
    ps, ss = [], []
    for _ in range(num_batches):
        video = next(batches)["video"]
        recon = vae.decode(vae.encode(video.to(vae.dtype)))
        ps.append(psnr(recon.float(), video).mean().item())
        ss.append(ssim(recon.float(), video).mean().item())
    return {"val_psnr": sum(ps) / len(ps), "val_ssim": sum(ss) / len(ss)}


def parse_args(argv=None) -> VAETrainConfig:
    return parse_config(VAETrainConfig, __doc__, argv)


if __name__ == "__main__":
    train(parse_args())
