"""Stage 0, ``conditions``: what the student is distilled *from*: real start frames, real action sequences, captions.

The game plays (the explorer policy, on-the-fly workers, training maps only for ``--split train``), every clip's
first frame is encoded by the VAE, and a shard set (``distillation.dmd.shards``) keeps, per clip:

* ``first_latent`` ``[N, 16, 1, h, w]`` bf16: the normalised latent of the real start frame;
* ``actions`` ``[N, n, 6]`` float32: the ``[W, A, S, D, yaw, pitch]`` actions that followed it;
* ``latents`` ``[N, 16, 1 + n, h, w]`` bf16 (``--real-latents``, for validation sets): the whole real clip
  encoded, the ground truth in latent space;
* the caption (shard metadata).

Precomputing them here means the GPU stages need neither the game nor the VAE: a device call carries the teacher
and this set (about 6 kB per clip) and nothing else. The set records the VAE's latent fingerprint; the stages
refuse a teacher trained on other latents.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distillation.dmd.shards import ShardSet
from distillation.doom_data import clip_batches
from distillation.vae_export import latent_fingerprint, load_exported_vae

KIND = "conditions"


@dataclasses.dataclass
class ConditionsConfig:
    vae: str = "checkpoints/doom_vae"  # VAE export whose encoder makes the latents (the teacher's)
    out: str = "runs/dmd/conditions"  # the set's folder (resumes: shards already there are kept)
    split: str = "train"  # "train" (training maps) or "val" (held-out maps MAP05/13/21/29)
    clips: int = 2048  # clips in the set
    steps: int = 16  # actions per clip (>= the teacher's clip, 8; longer for self-rollouts past it)
    shard_clips: int = 256  # clips per shard
    real_latents: bool = False  # also store the whole real clip's latents (validation sets)
    data: str = "onthefly"  # "onthefly" (game workers) or a folder of collected shards
    workers: int = 2  # game worker processes
    seed: int = 0  # seed of the game streams
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # where the VAE encodes


ENCODE_CLIPS = 32  # clips collated and encoded at once (memory: ~1 GB of float video at 33 steps)


def encode_conditions(vae, batch: dict, n: int, real_latents: bool) -> dict[str, torch.Tensor]:
    """The first ``n`` clips of a collated batch (``video`` [B, 3, F, H, W]) as condition tensors: the start
    latent (and every latent frame with ``real_latents``) in bf16, the actions in float32."""
    video = batch["video"][:n]
    with torch.no_grad():
        # The causal encoder's first latent frame depends on the first video frame alone.
        first = vae.encode(video[:, :, :1].to(vae.dtype), chunked=False)
        tensors = {"first_latent": first.to(torch.bfloat16), "actions": batch["actions"][:n].float()}
        if real_latents:
            tensors["latents"] = vae.encode(video.to(vae.dtype), chunked=False).to(torch.bfloat16)
    return tensors


def build(cfg: ConditionsConfig) -> Path:
    """Play and encode until the set in ``cfg.out`` has ``cfg.clips`` clips; returns its folder."""
    if cfg.split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {cfg.split!r}")
    device = torch.device(cfg.device)
    meta = {"vae_fingerprint": latent_fingerprint(cfg.vae), "split": cfg.split, "steps": cfg.steps}
    meta["real_latents"] = cfg.real_latents
    out = ShardSet.open(cfg.out, KIND, meta)
    for name in out.drop_bad():
        print(f"rebuilding {Path(cfg.out) / name}: it failed its check")
    if out.rows >= cfg.clips:
        return out.folder
    vae = load_exported_vae(cfg.vae, device, decoder=False)
    # A resumed set continues with other game streams, so it adds new clips rather than repeating old ones.
    # Clips are collated and encoded a few at a time: a whole shard of 512 33-step videos in float32 is ~15 GB.
    batches = clip_batches(
        cfg.data, min(cfg.shard_clips, ENCODE_CLIPS), cfg.steps, device, split=cfg.split, workers=cfg.workers,
        seed=cfg.seed + out.rows,
    )  # fmt: skip
    bar = tqdm(total=cfg.clips, initial=out.rows, desc=f"conditions ({cfg.split})", dynamic_ncols=True)
    try:
        while out.rows < cfg.clips:
            n = min(cfg.shard_clips, cfg.clips - out.rows)
            parts: list[dict[str, torch.Tensor]] = []
            captions: list[str] = []
            while len(captions) < n:
                batch = next(batches)
                k = min(len(batch["captions"]), n - len(captions))
                parts.append(encode_conditions(vae, batch, k, cfg.real_latents))
                captions += list(batch["captions"][:k])
                bar.update(k)
            out.add({key: torch.cat([p[key] for p in parts]) for key in parts[0]}, captions)
    finally:
        bar.close()
        if hasattr(batches, "close"):
            batches.close()
    return out.folder
