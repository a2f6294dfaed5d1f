"""Doom clips as training batches on a device, from collected shards or straight from game workers.

A batch is a dict: ``video`` ``[B, 3, F, H, W]`` float in [-1, 1] on the device (the uint8 -> float conversion
happens there, so CPU workers only play the game), ``actions`` ``[B, n, 6]``, ``captions`` (list of B strings,
the clip's prompt). ``F = 4n + 1``; action ``i`` drives latent frame ``i + 1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from world_model import doom
from world_model.world import video_to_tensor


def generation_config(steps: int, height: int = doom.HEIGHT, width: int = doom.WIDTH, wad: str = "freedoom2"):
    """The on-the-fly generator for ``steps``-action clips at the model resolution (rendered at 160x120)."""
    from distillation.data.clips import DEFAULT_ENV, GenerationConfig
    from distillation.data.splits import MapSplit

    env = dataclasses.replace(DEFAULT_ENV, wad=wad, resolution=(160, 120), frame_size=(width, height))
    return GenerationConfig(env=env, maps=MapSplit(wad), steps_per_clip=steps)


def held_out_batches(
    source: str, batch_size: int, steps: int, device: torch.device | str, seed: int
) -> Iterator[dict[str, Any]]:
    """Batches from the held-out maps that are the same in every run and session, for trainers' validation.

    One game stream: the clips of several workers interleave in arrival order, so a pool would draw another set
    each run and make validation scores of different runs incomparable."""
    return clip_batches(source, batch_size, steps, device, split="val", workers=1, seed=seed)


def _collate(items: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    video = video_to_tensor(torch.stack([it["frames"] for it in items]), device)  # from [B, F, H, W, 3] uint8
    actions = torch.stack([torch.as_tensor(it["actions"]) for it in items]).to(device)
    return {"video": video, "actions": actions, "captions": [it["caption"] for it in items]}


def clip_batches(
    source: str,
    batch_size: int,
    steps: int,
    device: torch.device | str,
    split: str = "train",
    workers: int = 4,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Endless batches. ``source`` is ``"onthefly"`` (game worker processes) or a collected data folder."""
    from distillation.data.dataset import OnTheFlyClipDataset, ShardClipDataset

    device = torch.device(device)
    if source == "onthefly":
        ds = OnTheFlyClipDataset(generation_config(steps), split=split, num_workers=workers, seed=seed, steps=steps)
        buf: list[dict[str, Any]] = []
        for item in ds:
            buf.append(item)
            if len(buf) == batch_size:
                yield _collate(buf, device)
                buf = []
        return
    ds = ShardClipDataset(source, split=split, steps=steps)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=list,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    while True:
        for items in loader:
            yield _collate(items, device)
