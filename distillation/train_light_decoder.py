"""Train the light streaming decoder by distillation from a Wan-class VAE.

For every batch of clips [B, 3, F, H, W] in [-1, 1]: the teacher encodes (normalised latents) and decodes
them; the student decodes the same latents and regresses the teacher's frames (MSE + L1). The student learns the
teacher's decoder, not the raw pixels, so its errors are the distillation gap alone.

    python -m distillation.train_light_decoder --data clips/ --vae-weights Wan2.1_VAE.pth --out runs/light

``--data`` is a folder of ``.mp4`` or ``.npz`` files (uint8 frames [F, H, W, 3] under ``frames``/``video`` or as
the only array), or ``onthefly`` for ViZDoom clips played by game workers. Clips of ``--frames`` (4n + 1) frames
are cut at random and cropped to ``--size``. In code, pass any iterable of video tensors (or a
``start_step -> iterable`` callable, so a resumed run sees the same batches) to ``train_light_decoder``.

``--adv-weight`` > 0 adds an adversarial term (``distillation/training/adversarial.py``): a PatchGAN discriminator
on frames scores the real frames against the student's from ``--adv-start`` on, and the student is also trained to
pass as real, which keeps the textures the pixel losses blur away (hinge loss and taming-transformers' adaptive
weight by default; see the "adversarial term" options).

Shared training pieces (``distillation/training``): ``checkpoint.pt`` (student, optimiser, EMA, step, RNG, and
the discriminator with its optimiser when the adversarial term is on) is written atomically every
``--checkpoint-every`` steps, at the end, and when ``--max-minutes`` runs out; a rerun with the same ``--out``
resumes from it exactly. ``log.jsonl`` gets the loss terms, lr and steps/s every ``--log-every`` steps (with the
term on also ``adv_loss``, ``adv_weight``, ``disc_loss``, ``logits_real`` / ``logits_fake``, ``disc_grad_norm`` and
``disc_lr``) and the validation scores every ``--val-every`` steps and at the end. Validation runs on held-out
clips (split ``val`` of the Doom data with ``--data onthefly``; a fixed batch drawn apart from the training stream
for a folder): PSNR / SSIM of the student and of the VAE decoder against the real frames and the gap between them
(the target: the light decoder within 1 dB of the VAE decoder). The better of the raw and the EMA student on that
set is exported as ``light_decoder.pt`` (``load_light_decoder``) with ``result.json`` beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import atomic_write, restore_state, save_state
from distillation.training.ema import EMA
from distillation.training.metrics import psnr, ssim
from distillation.training.optim import clipped_step, fused_adamw
from distillation.training.replay import replayed_video_stream
from world_model.vae import (
    LightDecoder,
    LightDecoderConfig,
    VAEConfig,
    WanVAE,
    load_light_decoder,
    load_wan_vae,
    save_light_decoder,
    widen_light_decoder,
)
from world_model.vae.light_widen import widths_widen

if TYPE_CHECKING:  # imported when the adversarial term is on (train_light_decoder)
    from distillation.training.adversarial import Adversary

CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "light_decoder.pt"
RESULT_NAME = "result.json"
LOG_NAME = "log.jsonl"
VIDEO_SUFFIXES = (".mp4", ".npz")
VAL_SEED = 12345  # the held-out Doom clips: the same for every run and every resume

VideoSource = Iterable[Tensor] | Callable[[int], Iterable[Tensor]]


@dataclass
class TrainConfig:
    steps: int = 20_000
    lr: float = 3e-4  # peak AdamW learning rate
    warmup: int = 200  # steps of linear warm-up (again after --init-from: the optimizer starts fresh)
    cooldown: float = 0.25  # fraction of max_minutes at the end over which the rate falls to 5% (needs max_minutes)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    mse_weight: float = 1.0  # weight of the squared error in each of the two targets' losses below
    l1_weight: float = 1.0  # weight of the absolute error in them
    # Weights of the two targets: the VAE decoder's frames (distillation: a learnable, noise-free target) and the
    # real frames (what the harness scores: a student trained on them alone is not capped by the teacher's own
    # errors). 0 skips a target; without the teacher's frames a step needs no VAE decode and runs faster.
    teacher_weight: float = 1.0
    real_weight: float = 0.0
    ema: float = 0.999
    # Adversarial term (distillation/training/adversarial.py): a PatchGAN discriminator scores the real frames
    # against the student's, frame by frame, and the student is also trained to pass as real (the pixel losses
    # alone blur textures). adv_weight 0 is off: no discriminator is built, nothing is drawn from the RNGs, and
    # the run is the one without it, number for number.
    adv_weight: float = 0.0  # weight of the generator's term (times the adaptive weight when adv_adaptive)
    adv_start: int = 0  # step the discriminator and the term start at (at the earliest: the step it is added at)
    adv_warmup: int = 200  # steps from adv_start over which the disc's rate and the term's weight rise from 0
    disc_lr: float = 1e-4  # peak AdamW learning rate of the discriminator (betas 0.5, 0.9)
    adv_loss: str = "hinge"  # "hinge" or "nonsaturating"
    adv_adaptive: bool = True  # scale the term by taming's gradient-norm ratio at the student's last conv
    disc_width: int = 64  # the discriminator's first width (doubling per layer, at most 8x)
    disc_layers: int = 3  # strided 4x4 layers of the discriminator (a logit sees 54 pixels at 3)
    checkpoint_every: int = 500
    log_every: int = 50
    val_every: int = 1000
    max_minutes: float | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class TrainResult:
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False
    checkpoint: Path | None = None
    metrics: dict | None = None  # what result.json holds (None when there was no validation set)


# ------------------------------------------------------------------------------------------- training


def teacher_targets(vae: WanVAE, video: Tensor, decode: bool = True) -> tuple[Tensor, Tensor | None]:
    """video [B, 3, F, H, W] -> (normalised latents [B, z, T, H/8, W/8], teacher frames [B, 3, F, H, W] or None
    when ``decode`` is False)."""
    with torch.no_grad():
        # Whole-clip passes: training clips are short, and they equal the chunked passes (tests check it).
        latents = vae.encode(video, chunked=False)
        target = vae.decode(latents, chunked=False) if decode else None
    return latents, target


def loss_terms(
    pred: Tensor, target: Tensor | None, cfg: TrainConfig, real: Tensor | None = None
) -> tuple[Tensor, dict[str, float]]:
    """The weighted loss of ``pred`` [B, 3, F, H, W] against the teacher's frames ``target`` and, when
    ``cfg.real_weight`` > 0, the real frames ``real``; terms against the real frames are logged as real_*."""
    pred = pred.float()
    loss, terms = pred.new_zeros(()), {}
    for prefix, ref, weight in (("", target, cfg.teacher_weight), ("real_", real, cfg.real_weight)):
        if weight == 0:
            continue
        if ref is None:
            raise ValueError(f"a {prefix or 'teacher '}target weight of {weight} needs those frames, got None")
        mse, l1 = F.mse_loss(pred, ref.float()), F.l1_loss(pred, ref.float())
        loss = loss + weight * (cfg.mse_weight * mse + cfg.l1_weight * l1)
        terms.update({f"{prefix}mse": mse.item(), f"{prefix}l1": l1.item()})
    return loss, terms


def make_optimizer(student: LightDecoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Fused AdamW, as in the other trainers: :func:`train_step` skips a non-finite update on the device."""
    return fused_adamw(student.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_step(
    student: LightDecoder,
    vae: WanVAE,
    optimizer: torch.optim.Optimizer,
    video: Tensor,
    cfg: TrainConfig,
    adversary: Adversary | None = None,
    step: int = 0,
) -> dict[str, float]:
    """One distillation step on a batch [B, 3, F, H, W]; returns the loss (before the update), its terms and the
    gradient norm (not finite: the update was skipped).

    With an ``adversary`` active at ``step``, the loss also holds its generator term against the real frames, and
    the discriminator is then updated on the real frames against the student's (its terms are returned too)."""
    device = next(student.parameters()).device
    video = video.to(device, non_blocking=True)
    with _autocast(device):
        latents, target = teacher_targets(vae, video, decode=cfg.teacher_weight != 0)
        pred = student(latents)
    loss, terms = loss_terms(pred, target, cfg, real=video)
    adversarial = adversary is not None and adversary.active(step)
    if adversarial:
        adv, adv_terms = adversary.generator_loss(pred, loss, student.conv_out.weight, step)
        loss = loss + adv
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = clipped_step(optimizer, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    out = {"loss": float(loss.detach()), **terms, "grad_norm": float(gnorm)}
    if adversarial:
        adv_terms.update(adversary.discriminator_step(video, pred))
        out.update({k: float(v) for k, v in adv_terms.items()}, disc_lr=adversary.lr)
    return out


def _batches(videos: VideoSource, start_step: int) -> Iterator[Tensor]:
    """Batches from ``start_step`` on: a callable is asked for them; a re-iterable collection is cycled."""
    if callable(videos):
        yield from videos(start_step)
        return
    while True:
        produced = False
        for video in videos:
            produced = True
            yield video
        if not produced:
            raise ValueError("the video iterable produced no batches")
        if iter(videos) is videos:  # a one-shot iterator: training ends when it does
            return


class Validator:
    """Held-out clips with their VAE latents and VAE-decoded frames, computed once; scores a student on them."""

    def __init__(self, vae: WanVAE, videos: Sequence[Tensor], device: torch.device) -> None:
        self.device = device
        self.items: list[tuple[Tensor, Tensor]] = []  # (real frames, latents)
        vae_p, vae_s = [], []
        decode = hasattr(vae, "decoder")  # an encoder-only export (--teacher-weight 0): no VAE reference scores
        for video in videos:
            video = video.to(device).float()
            with _autocast(device):
                latents, frames = teacher_targets(vae, video, decode=decode)
            if decode:
                frames = frames.float().clamp(-1, 1)
                vae_p.append(psnr(frames, video).flatten())
                vae_s.append(ssim(frames, video).flatten())
            self.items.append((video, latents))
        self.vae = (
            {"vae_psnr": torch.cat(vae_p).mean().item(), "vae_ssim": torch.cat(vae_s).mean().item()} if decode else {}
        )
        self.clips = sum(v.shape[0] for v, _ in self.items)

    @torch.no_grad()
    def score(self, student: LightDecoder) -> dict[str, float]:
        was_training = student.training
        student.eval()
        ps, ss = [], []
        for video, latents in self.items:
            with _autocast(self.device):
                pred = student(latents)
            pred = pred.float().clamp(-1, 1)
            ps.append(psnr(pred, video).flatten())
            ss.append(ssim(pred, video).flatten())
        student.train(was_training)
        p = torch.cat(ps).mean().item()
        gap = {"gap_db": self.vae["vae_psnr"] - p} if self.vae else {}
        return {"val_psnr": p, "val_ssim": torch.cat(ss).mean().item(), **self.vae, **gap}


def _widens(old: LightDecoderConfig, new: LightDecoderConfig) -> bool:
    """Whether ``new`` differs from ``old`` only in widths, each at least as wide (``widen_light_decoder``)."""
    # Widths first: ``replace`` with another number of stages would fail the config's own check.
    return widths_widen(old.widths, new.widths) and replace(old, widths=new.widths) == new


def train_light_decoder(
    vae: WanVAE,
    videos: VideoSource,
    out_dir: str | os.PathLike,
    student_config: LightDecoderConfig | None = None,
    cfg: TrainConfig | None = None,
    device: str | torch.device | None = None,
    val_videos: Sequence[Tensor] | None = None,
    init_from: str | os.PathLike | None = None,
    vae_fingerprint: str | None = None,
) -> TrainResult:
    """Distil ``vae``'s decoder into a ``LightDecoder``; resumes from ``out_dir/checkpoint.pt`` if present.

    ``videos`` yields batches [B, 3, F, H, W] in [-1, 1] (F = 4n + 1, H, W multiples of 8), or is a callable
    ``start_step -> iterable`` so a resumed run continues the same data stream. ``val_videos`` (held-out batches)
    drive the periodic validation and pick the export (raw or EMA student); without them the raw student is
    exported and there is no ``result.json``. ``init_from`` (a ``light_decoder.pt`` of the same widths, or of
    narrower ones, which are widened without changing its output) is the start when there is no checkpoint yet:
    a run on a new machine continues the last session's student.
    """
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    torch.manual_seed(cfg.seed)

    vae = vae.to(device).eval().requires_grad_(False)
    student_config = student_config or LightDecoderConfig(z_dim=vae.config.z_dim)
    if student_config.z_dim != vae.config.z_dim:
        raise ValueError(f"student z_dim {student_config.z_dim} != teacher z_dim {vae.config.z_dim}")
    if init_from is not None and not ckpt_path.exists():
        student = load_light_decoder(init_from)
        if student.config != student_config and _widens(student.config, student_config):
            student = widen_light_decoder(student, student_config.widths)
            print(f"widened {init_from} to widths {student_config.widths} (same output at the start)", file=sys.stderr)
        if student.config != student_config:
            raise ValueError(
                f"--init-from {init_from} is a light decoder of {student.config}, not of the requested "
                f"{student_config}: pass the --widths / --blocks-per-stage it was trained with (or widths at "
                "least as wide, which widen it)"
            )
        print(f"initialised from {init_from}; optimizer state starts fresh", file=sys.stderr)
    else:
        student = LightDecoder(student_config)
    student = student.to(device).train()
    optimizer = make_optimizer(student, cfg)
    ema = EMA(student, cfg.ema)
    parts = {"student": student, "optimizer": optimizer, "ema": ema}
    adversary = None
    if cfg.adv_weight != 0:  # off: the module is not even imported
        from distillation.training.adversarial import build_adversary

        adversary = build_adversary(cfg, device)
        parts.update(adversary.parts())
    config = {**asdict(cfg), "student": asdict(student_config)}
    optional = tuple(adversary.parts()) if adversary is not None else ()  # a discriminator added to a run
    resumed = restore_state(ckpt_path, parts, config, ("student",), device, optional=optional)
    step = resumed or 0
    if adversary is not None:
        adversary.begin(step)

    def save() -> None:
        save_state(ckpt_path, step, config, parts)

    validator = Validator(vae, val_videos, device) if val_videos else None
    log = JsonlLog(out / LOG_NAME)

    def validate() -> dict[str, dict[str, float]]:
        scores = {"model": validator.score(student), "ema": validator.score(ema.model)}
        log.write(step=step, **{f"{k}_{name}": v for name, s in scores.items() for k, v in s.items()})
        return scores

    result = TrainResult(start_step=step, step=step, checkpoint=ckpt_path if resumed is not None else None)
    saved_step = step if resumed is not None else -1
    budget = TimeBudget(cfg.max_minutes)
    bar = tqdm(total=cfg.steps, initial=step, desc="light decoder", disable=not cfg.progress, dynamic_ncols=True)
    batches = _batches(videos, step) if step < cfg.steps else iter(())
    budget.mark(step)
    try:
        while step < cfg.steps:
            try:
                video = next(batches)
            except StopIteration:
                break
            lr = learning_rate(cfg.lr, step, warmup=cfg.warmup, budget=budget, cooldown=cfg.cooldown)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if adversary is None:
                terms = train_step(student, vae, optimizer, video, cfg)
            else:
                adversary.schedule(step, budget, cfg.cooldown)
                terms = train_step(student, vae, optimizer, video, cfg, adversary, step)
            step += 1
            ema.update(student, step)
            result.losses.append(terms["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
            if step % cfg.log_every == 0:
                log.write(step=step, **terms, lr=lr, steps_per_s=budget.steps_per_s(step))
            if validator is not None and step % cfg.val_every == 0 and step < cfg.steps:
                validate()
            out_of_time = budget.expired()
            if step % cfg.checkpoint_every == 0 or step >= cfg.steps or out_of_time:
                save()
                saved_step = step
            if out_of_time:
                result.stopped_early = step < cfg.steps
                break
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stop game workers feeding the stream
    if saved_step != step:
        save()
    result.checkpoint, result.step = ckpt_path, step

    # Export whichever of the raw and EMA students scores better on the held-out clips (early in training the
    # average can still trail the raw weights), with its scores beside it.
    chosen = "model"
    if validator is not None:
        scores = validate()
        chosen = max(scores, key=lambda name: scores[name]["val_psnr"])
        result.metrics = {
            "step": step,
            **scores[chosen],
            "within_1db": scores[chosen]["gap_db"] <= 1.0 if "gap_db" in scores[chosen] else None,
            "exported": chosen,
            "scores": scores,
            "val_clips": validator.clips,
        }
        if vae_fingerprint is not None:
            result.metrics["vae_fingerprint"] = vae_fingerprint
    save_light_decoder(student if chosen == "model" else ema.model, out / EXPORT_NAME, vae_fingerprint)
    if result.metrics is not None:
        text = json.dumps(result.metrics, indent=1)
        atomic_write(out / RESULT_NAME, lambda tmp: tmp.write_text(text))
    return result


# ------------------------------------------------------------------------------------------------ data


def _load_frames(path: Path) -> np.ndarray:
    """uint8 [F, H, W, 3]."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            names = [n for n in ("frames", "video") if n in data.files] or data.files
            if len(names) != 1 and not any(n in data.files for n in ("frames", "video")):
                raise ValueError(f"{path}: expected an array named 'frames' or 'video', found {data.files}")
            frames = data[names[0]]
    else:
        import imageio.v2 as imageio

        with imageio.get_reader(str(path), format="ffmpeg") as reader:
            frames = np.stack([np.asarray(f) for f in reader])
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: expected frames [F, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames, got {frames.dtype}")
    return frames


class VideoFolder:
    """Random clips [B, 3, F, H, W] in [-1, 1] from a folder of .mp4/.npz videos.

    Files are decoded on first use and kept in memory (fine for game-footage datasets at low resolution).
    Batch ``k`` depends only on (seed, k), so a resumed run draws the batches it would have drawn.
    """

    def __init__(self, root: str | os.PathLike, frames: int, size: tuple[int, int], batch_size: int, seed: int = 0):
        self.files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.files:
            raise ValueError(f"no {'/'.join(VIDEO_SUFFIXES)} files under {root}")
        if (frames - 1) % 4:
            raise ValueError(f"--frames must be 4n+1 (the VAE's frame rule), got {frames}")
        if size[0] % 8 or size[1] % 8:
            raise ValueError(f"--size must be multiples of 8, got {size[0]}x{size[1]}")
        self.frames, self.size, self.batch_size, self.seed = frames, size, batch_size, seed
        self._cache: dict[Path, np.ndarray] = {}

    def _video(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = _load_frames(path)
        return self._cache[path]

    def clip(self, rng: np.random.Generator) -> Tensor:
        """[3, F, H, W] in [-1, 1]: random file, start, scale-to-cover and random crop."""
        video = self._video(self.files[rng.integers(len(self.files))])
        n = video.shape[0]
        if n < self.frames:
            video = np.concatenate([video, np.repeat(video[-1:], self.frames - n, axis=0)])
            n = self.frames
        start = int(rng.integers(n - self.frames + 1))
        x = torch.from_numpy(np.ascontiguousarray(video[start : start + self.frames])).permute(0, 3, 1, 2).float()
        h, w = self.size
        scale = max(h / x.shape[2], w / x.shape[3])
        if scale != 1.0:
            new = (max(h, round(x.shape[2] * scale)), max(w, round(x.shape[3] * scale)))
            x = F.interpolate(x, size=new, mode="bilinear", antialias=scale < 1, align_corners=False)
        top = int(rng.integers(x.shape[2] - h + 1))
        left = int(rng.integers(x.shape[3] - w + 1))
        x = x[:, :, top : top + h, left : left + w]
        return (x / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()

    def batch(self, step: int) -> Tensor:
        rng = np.random.default_rng([self.seed, step])
        return torch.stack([self.clip(rng) for _ in range(self.batch_size)])

    def held_out(self, index: int = 0) -> Tensor:
        """A fixed validation batch, drawn from its own random stream (not one the training batches use)."""
        rng = np.random.default_rng([self.seed, index, VAL_SEED])
        return torch.stack([self.clip(rng) for _ in range(self.batch_size)])

    def from_step(self, start_step: int) -> Iterator[Tensor]:
        step = start_step
        while True:
            yield self.batch(step)
            step += 1


# -------------------------------------------------------------------------------------------------- CLI


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distillation.train_light_decoder",
        description="Distil a Wan-class VAE decoder into the light streaming decoder (TAEHV style).",
    )
    p.add_argument(
        "--data",
        required=True,
        help="folder of .mp4 / .npz videos (uint8 [F, H, W, 3] in .npz), or 'onthefly' for ViZDoom clips played "
        "by game worker processes at the Doom model's resolution",
    )
    p.add_argument("--workers", type=int, default=4, help="game worker processes with --data onthefly")
    p.add_argument(
        "--replay-clips",
        type=int,
        default=1024,
        help="with --data onthefly: clips held on the device and redrawn (mirrored at random) while the workers "
        "play new ones; they were the limit on the GPU (4 clips x 11.3 steps/s = their 45 clips/s). 0: each step "
        "takes the next played batch",
    )
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt (resumed if present), light_decoder.pt")
    p.add_argument(
        "--init-from",
        default=None,
        help="a light_decoder.pt to start from when --out has no checkpoint yet (the last session's export)",
    )
    teacher = p.add_argument_group("teacher VAE")
    teacher.add_argument("--vae-weights", help="Wan2.1_VAE.pth or a diffusers AutoencoderKLWan state dict")
    teacher.add_argument("--vae-export", help="a VAE exported by distillation.train_vae (folder with vae.json)")
    teacher.add_argument("--vae-dim", type=int, default=None, help="base width (read from the weights if given)")
    teacher.add_argument("--vae-z-dim", type=int, default=None, help="latent channels (read from the weights)")
    teacher.add_argument("--random-vae", action="store_true", help="random teacher (smoke tests only)")
    student = p.add_argument_group("student")
    student.add_argument("--widths", type=_ints, default=(256, 128, 64, 64), help="stage widths, e.g. 256,128,64,64")
    student.add_argument("--blocks-per-stage", type=int, default=3)
    train = p.add_argument_group("training")
    train.add_argument("--steps", type=int, default=20_000)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--frames", type=int, default=9, help="frames per clip, 4n+1")
    train.add_argument("--size", type=_ints, default=(256, 256), help="crop HxW, multiples of 8 (e.g. 240x320)")
    train.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate")
    train.add_argument(
        "--warmup", type=int, default=200, help="steps of linear warm-up (also after --init-from: fresh optimizer)"
    )
    train.add_argument("--cooldown", type=float, default=0.25, help="with --max-minutes: last share, rate down to 5%%")
    train.add_argument(
        "--teacher-weight",
        type=float,
        default=1.0,
        help="weight of the loss against the VAE decoder's frames (distillation); 0 skips the VAE decode",
    )
    train.add_argument(
        "--real-weight",
        type=float,
        default=0.0,
        help="weight of the loss against the real frames (what the harness scores; the teacher's errors do not "
        "cap a student trained on them)",
    )
    train.add_argument(
        "--mse-weight",
        type=float,
        default=1.0,
        help="weight of the squared error (PSNR's term; at errors of a few hundredths L1 leads unless this is ~20)",
    )
    train.add_argument("--l1-weight", type=float, default=1.0, help="weight of the absolute error")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--grad-clip", type=float, default=1.0)
    train.add_argument("--ema", type=float, default=0.999, help="EMA decay of the student weights (with warm-up)")
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--log-every", type=int, default=50, help="loss terms, lr, steps/s to log.jsonl")
    train.add_argument(
        "--val-every", type=int, default=1000, help="validate (raw and EMA) every N steps and at the end"
    )
    train.add_argument(
        "--val-batches",
        type=int,
        default=4,
        help="held-out batches: split 'val' of the Doom data with onthefly, else fixed clips of the folder",
    )
    train.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    train.add_argument("--no-progress", action="store_true")
    adv = p.add_argument_group(
        "adversarial term",
        "a PatchGAN discriminator on frames (real against the student's) and a generator term that keeps "
        "textures sharp; off with --adv-weight 0 (the default), when nothing of it is built",
    )
    adv.add_argument(
        "--adv-weight",
        type=float,
        default=0.0,
        help="weight of the generator's adversarial term (times the adaptive weight unless --no-adv-adaptive); "
        "0: off. About 0.1-0.5 with the adaptive weight, as in taming-transformers / the SD VAE",
    )
    adv.add_argument(
        "--adv-start",
        type=int,
        default=0,
        help="step at which the discriminator starts learning and the term starts (e.g. once the pixel losses "
        "have settled); a run resumed with the term from a checkpoint without it starts it at the checkpoint's "
        "step at the earliest, with a fresh discriminator that warms up there",
    )
    adv.add_argument(
        "--adv-warmup",
        type=int,
        default=200,
        help="steps from --adv-start over which the discriminator's rate and the term's weight rise linearly from 0",
    )
    adv.add_argument(
        "--disc-lr", type=float, default=1e-4, help="peak AdamW rate of the discriminator (betas 0.5, 0.9)"
    )
    adv.add_argument(
        "--adv-loss",
        choices=("hinge", "nonsaturating"),
        default="hinge",
        help="GAN loss of both players: hinge (taming, the SD VAE) or non-saturating (logistic)",
    )
    adv.add_argument(
        "--adv-adaptive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scale the term by taming's ratio of the pixel loss's and the GAN loss's gradient norms at the "
        "student's last conv (--no-adv-adaptive: the fixed --adv-weight)",
    )
    adv.add_argument("--disc-width", type=int, default=64, help="the discriminator's first width (x2 per layer, <= 8x)")
    adv.add_argument(
        "--disc-layers",
        type=int,
        default=3,
        help="strided 4x4 layers of the discriminator: logits per 2^N x 2^N pixels (a logit sees 54 pixels at 3)",
    )
    return p


def build_teacher(args: argparse.Namespace, device: torch.device) -> WanVAE:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.vae_export:
        from distillation.vae_export import load_exported_vae

        # With --teacher-weight 0 the VAE decoder is never run: its half need not be there (a GPU call's tree is
        # size-limited, and the encoder alone is 12 of the export's 28 MB).
        return load_exported_vae(args.vae_export, device, dtype, decoder=args.teacher_weight != 0)
    if args.vae_weights:
        overrides = {k: v for k, v in (("dim", args.vae_dim), ("z_dim", args.vae_z_dim)) if v is not None}
        config = VAEConfig(**overrides) if overrides else None
        return load_wan_vae(args.vae_weights, config=config, device=device, dtype=dtype)
    if not args.random_vae:
        raise SystemExit("give --vae-weights (or --random-vae for a smoke test)")
    torch.manual_seed(args.seed)
    config = VAEConfig(dim=args.vae_dim or 96, z_dim=args.vae_z_dim or 16)
    return WanVAE(config).to(device=device, dtype=dtype).eval()


def main(argv: Sequence[str] | None = None) -> TrainResult:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if len(args.size) != 2:
        parser.error(f"--size needs HxW, got {args.size}")
    if args.data == "onthefly":
        from distillation.doom_data import clip_batches, held_out_batches

        if (args.frames - 1) % 4:
            parser.error(f"--frames must be 4n + 1, got {args.frames}")

        def source(start_step: int):
            batches = clip_batches(
                "onthefly",
                args.batch_size,
                (args.frames - 1) // 4,
                device,
                workers=args.workers,
                seed=args.seed + start_step,
            )
            if args.replay_clips:
                return replayed_video_stream(
                    batches, args.replay_clips, args.batch_size, device, args.seed + start_step
                )
            return (b["video"] for b in batches)

        def held_out() -> list[Tensor]:
            steps = (args.frames - 1) // 4
            batches = held_out_batches("onthefly", args.batch_size, steps, device, seed=VAL_SEED)
            try:
                return [b["video"] for b in itertools.islice(batches, args.val_batches)]
            finally:
                batches.close()  # stop its game workers
    else:
        try:
            folder = VideoFolder(args.data, args.frames, (args.size[0], args.size[1]), args.batch_size, seed=args.seed)
        except ValueError as e:
            parser.error(str(e))
        source = folder.from_step

        def held_out() -> list[Tensor]:
            return [folder.held_out(i) for i in range(args.val_batches)]

    vae = build_teacher(args, device)
    cfg = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        cooldown=args.cooldown,
        mse_weight=args.mse_weight,
        l1_weight=args.l1_weight,
        teacher_weight=args.teacher_weight,
        real_weight=args.real_weight,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        ema=args.ema,
        adv_weight=args.adv_weight,
        adv_start=args.adv_start,
        adv_warmup=args.adv_warmup,
        disc_lr=args.disc_lr,
        adv_loss=args.adv_loss,
        adv_adaptive=args.adv_adaptive,
        disc_width=args.disc_width,
        disc_layers=args.disc_layers,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        val_every=args.val_every,
        max_minutes=args.max_minutes,
        seed=args.seed,
        progress=not args.no_progress,
    )
    student_cfg = LightDecoderConfig(z_dim=vae.config.z_dim, widths=args.widths, blocks_per_stage=args.blocks_per_stage)
    val_videos = held_out() if args.val_batches > 0 else None
    fingerprint = None
    if args.vae_export:
        from distillation.vae_export import latent_fingerprint

        fingerprint = latent_fingerprint(args.vae_export)
    result = train_light_decoder(
        vae,
        source,
        args.out,
        student_cfg,
        cfg,
        device=device,
        val_videos=val_videos,
        init_from=args.init_from,
        vae_fingerprint=fingerprint,
    )
    summary = {
        "start_step": result.start_step,
        "step": result.step,
        "stopped_early": result.stopped_early,
        "last_loss": result.losses[-1] if result.losses else None,
        "checkpoint": str(result.checkpoint),
        "export": str(Path(args.out) / EXPORT_NAME),
        **({"validation": {k: v for k, v in result.metrics.items() if k != "scores"}} if result.metrics else {}),
    }
    print(json.dumps(summary), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
