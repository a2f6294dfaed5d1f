"""Train the light streaming decoder by distillation from a Wan-class VAE.

For every batch of clips [B, 3, F, H, W] in [-1, 1]: the teacher encodes (normalised latents) and decodes
them; the student decodes the same latents and regresses the teacher's frames (MSE + L1). The student learns the
teacher's decoder, not the raw pixels, so its errors are the distillation gap alone.

    python -m distillation.train_light_decoder --data clips/ --vae-weights Wan2.1_VAE.pth --out runs/light

``--data`` is a folder of ``.mp4`` or ``.npz`` files (uint8 frames [F, H, W, 3] under ``frames``/``video`` or as
the only array). Clips of ``--frames`` (4n + 1) frames are cut at random and cropped to ``--size``. In code, pass
any iterable of video tensors (or a ``start_step -> iterable`` callable, so a resumed run sees the same
batches) to ``train_light_decoder``.

Checkpoints (``checkpoint.pt``: student, optimiser, step, RNG) are written atomically every
``--checkpoint-every`` steps, at the end, and when ``--max-minutes`` runs out; a rerun with the same ``--out``
resumes from the last one. The final student is also written as ``light_decoder.pt`` (``load_light_decoder``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from world_model.vae import LightDecoder, LightDecoderConfig, VAEConfig, WanVAE, load_wan_vae, save_light_decoder

CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "light_decoder.pt"
VIDEO_SUFFIXES = (".mp4", ".npz")

VideoSource = Iterable[Tensor] | Callable[[int], Iterable[Tensor]]


@dataclass
class TrainConfig:
    steps: int = 20_000
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    mse_weight: float = 1.0
    l1_weight: float = 1.0
    checkpoint_every: int = 500
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


# ------------------------------------------------------------------------------------------- training


def teacher_targets(vae: WanVAE, video: Tensor) -> tuple[Tensor, Tensor]:
    """video [B, 3, F, H, W] -> (normalised latents [B, z, T, H/8, W/8], teacher frames [B, 3, F, H, W])."""
    with torch.no_grad():
        # Whole-clip passes: training clips are short, and they equal the chunked passes (tests check it).
        latents = vae.encode(video, chunked=False)
        target = vae.decode(latents, chunked=False)
    return latents, target


def distillation_loss(pred: Tensor, target: Tensor, cfg: TrainConfig) -> Tensor:
    pred, target = pred.float(), target.float()
    return cfg.mse_weight * F.mse_loss(pred, target) + cfg.l1_weight * F.l1_loss(pred, target)


def make_optimizer(student: LightDecoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(student.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def train_step(
    student: LightDecoder, vae: WanVAE, optimizer: torch.optim.Optimizer, video: Tensor, cfg: TrainConfig
) -> float:
    """One distillation step on a batch [B, 3, F, H, W]; returns the loss before the update."""
    device = next(student.parameters()).device
    video = video.to(device, non_blocking=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with autocast:
        latents, target = teacher_targets(vae, video)
        pred = student(latents)
    loss = distillation_loss(pred, target, cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
    optimizer.step()
    return float(loss.detach())


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, student: LightDecoder, optimizer: torch.optim.Optimizer, step: int, cfg) -> None:
    _atomic_save(
        {
            "step": step,
            "student": student.state_dict(),
            "student_config": asdict(student.config),
            "optimizer": optimizer.state_dict(),
            "train_config": asdict(cfg),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        },
        path,
    )


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


def train_light_decoder(
    vae: WanVAE,
    videos: VideoSource,
    out_dir: str | os.PathLike,
    student_config: LightDecoderConfig | None = None,
    cfg: TrainConfig | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Distil ``vae``'s decoder into a ``LightDecoder``; resumes from ``out_dir/checkpoint.pt`` if present.

    ``videos`` yields batches [B, 3, F, H, W] in [-1, 1] (F = 4n + 1, H, W multiples of 8), or is a callable
    ``start_step -> iterable`` so a resumed run continues the same data stream.
    """
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    vae = vae.to(device).eval().requires_grad_(False)
    step = 0
    if ckpt_path.exists():
        blob = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        student_config = LightDecoderConfig(**blob["student_config"])
        student = LightDecoder(student_config).to(device)
        student.load_state_dict(blob["student"])
        optimizer = make_optimizer(student, cfg)
        optimizer.load_state_dict(blob["optimizer"])
        step = int(blob["step"])
        torch.set_rng_state(blob["torch_rng"])
        random.setstate(blob["python_rng"])
    else:
        student_config = student_config or LightDecoderConfig(z_dim=vae.config.z_dim)
        if student_config.z_dim != vae.config.z_dim:
            raise ValueError(f"student z_dim {student_config.z_dim} != teacher z_dim {vae.config.z_dim}")
        student = LightDecoder(student_config).to(device)
        optimizer = make_optimizer(student, cfg)
    student.train()

    result = TrainResult(start_step=step, step=step, checkpoint=ckpt_path if ckpt_path.exists() else None)
    if step >= cfg.steps:
        return result
    saved_step = step if ckpt_path.exists() else -1
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    bar = tqdm(total=cfg.steps, initial=step, desc="light decoder", disable=not cfg.progress, dynamic_ncols=True)
    batches = _batches(videos, step)
    try:
        while step < cfg.steps:
            try:
                video = next(batches)
            except StopIteration:
                break
            loss = train_step(student, vae, optimizer, video, cfg)
            step += 1
            result.losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            out_of_time = time.monotonic() >= deadline
            if step % cfg.checkpoint_every == 0 or step >= cfg.steps or out_of_time:
                save_checkpoint(ckpt_path, student, optimizer, step, cfg)
                saved_step = step
            if out_of_time:
                result.stopped_early = step < cfg.steps
                break
    finally:
        bar.close()
    if saved_step != step:
        save_checkpoint(ckpt_path, student, optimizer, step, cfg)
    result.checkpoint = ckpt_path
    save_light_decoder(student, out / EXPORT_NAME)
    result.step = step
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
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt (resumed if present), light_decoder.pt")
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
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--grad-clip", type=float, default=1.0)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    train.add_argument("--no-progress", action="store_true")
    return p


def build_teacher(args: argparse.Namespace, device: torch.device) -> WanVAE:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.vae_export:
        from distillation.train_vae import load_exported_vae

        return load_exported_vae(args.vae_export, device, dtype)
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
        from distillation.doom_data import clip_batches

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
            return (b["video"] for b in batches)
    else:
        try:
            folder = VideoFolder(args.data, args.frames, (args.size[0], args.size[1]), args.batch_size, seed=args.seed)
        except ValueError as e:
            parser.error(str(e))
        source = folder.from_step
    vae = build_teacher(args, device)
    cfg = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        seed=args.seed,
        progress=not args.no_progress,
    )
    student_cfg = LightDecoderConfig(z_dim=vae.config.z_dim, widths=args.widths, blocks_per_stage=args.blocks_per_stage)
    result = train_light_decoder(vae, source, args.out, student_cfg, cfg, device=device)
    summary = {
        "start_step": result.start_step,
        "step": result.step,
        "stopped_early": result.stopped_early,
        "last_loss": result.losses[-1] if result.losses else None,
        "checkpoint": str(result.checkpoint),
        "export": str(Path(args.out) / EXPORT_NAME),
    }
    print(json.dumps(summary), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
