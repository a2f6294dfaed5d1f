"""The shard collector: plays the game, writes clip shards and the index; resumable and deterministic.

Shard ``s`` of a split is a pure function of (generation settings, ``seed``, split, ``s``): its episodes'
maps and seeds come from :func:`~distillation.data.clips.stream_rng`. Resuming therefore only has to
(re)make the shards the index does not list; a shard that was half-written when the collector was
killed is made again from scratch with identical content, so no clip is lost or duplicated. Raising
``train_shards``/``val_shards`` later extends a collection.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Any

from distillation.data.clips import ClipGenerator, GenerationConfig, stream_rng
from distillation.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    index_shards,
    load_index,
    remove_temporaries,
    shard_name,
    write_index,
    write_shard,
)


@dataclass(frozen=True)
class CollectConfig:
    """Args:
    out_dir: data folder (created). generation: what is played and how clips are cut.
    train_shards, val_shards: number of shards per split. clips_per_shard: clips in each shard.
    seed: base seed of the whole collection. compress_level: zlib level of shard members.
    workers: parallel game processes (each makes whole shards). progress: show a tqdm bar.
    """

    out_dir: str
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train_shards: int = 8
    val_shards: int = 2
    clips_per_shard: int = 16
    seed: int = 0
    compress_level: int = 1
    workers: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.train_shards < 0 or self.val_shards < 0:
            raise ValueError("train_shards and val_shards must be >= 0")
        if self.clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be >= 1, got {self.clips_per_shard}")
        if not 0 <= self.compress_level <= 9:
            raise ValueError(f"compress_level must be in 0..9, got {self.compress_level}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def content_key(self) -> dict[str, Any]:
        """Everything that determines shard contents; an existing folder must match it to be resumed.

        JSON-normalised (tuples become lists) so that it compares equal to what ``index.json`` holds.
        """
        key = {"generation": self.generation.to_dict(), "seed": self.seed, "clips_per_shard": self.clips_per_shard}
        return json.loads(json.dumps(key))


def _new_index(cfg: CollectConfig) -> dict[str, Any]:
    g = cfg.generation
    w, h = g.env.output_size
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "content": cfg.content_key(),
        "frames_per_step": g.frames_per_step,
        "steps_per_clip": g.steps_per_clip,
        "frames_per_clip": g.frames_per_clip,
        "frame_size": [w, h],
        "video_fps": g.env.video_fps,
        "action_spec": g.env.action_spec.to_dict(),
        "splits": {"train": list(g.maps.maps("train")), "val": list(g.maps.maps("val"))},
        "shards": [],
    }


def make_shard(gen: ClipGenerator, cfg: CollectConfig, split: str, shard: int) -> dict[str, Any]:
    """Play and write one shard; return its index entry."""
    rng = stream_rng(cfg.seed, split, shard, "shard")
    clips = list(gen.clips(rng, split, count=cfg.clips_per_shard))
    entry = write_shard(os.path.join(cfg.out_dir, shard_name(split, shard)), clips, cfg.compress_level)
    entry.update(split=split, shard=shard)
    return entry


_WORKER_GEN: ClipGenerator | None = None


def _worker_shard(args: tuple[CollectConfig, str, int]) -> dict[str, Any]:
    global _WORKER_GEN
    cfg, split, shard = args
    if _WORKER_GEN is None:
        _WORKER_GEN = ClipGenerator(cfg.generation)
    return make_shard(_WORKER_GEN, cfg, split, shard)


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Make every shard of ``cfg`` that ``out_dir``'s index does not list yet; return the final index."""
    from tqdm import tqdm

    os.makedirs(cfg.out_dir, exist_ok=True)
    index = load_index(cfg.out_dir)
    if index is None:
        index = _new_index(cfg)
    elif index["content"] != cfg.content_key():
        raise ValueError(
            f"{cfg.out_dir} holds data collected with different settings (generation/seed/clips_per_shard); "
            "use another --out folder, or the same settings to resume or extend it"
        )
    remove_temporaries(cfg.out_dir)
    # Entries whose file vanished are dropped so that their shards are made again.
    index["shards"] = index_shards(index, cfg.out_dir)
    done = {(e["split"], e["shard"]) for e in index["shards"]}
    wanted = [("train", s) for s in range(cfg.train_shards)] + [("val", s) for s in range(cfg.val_shards)]
    todo = [job for job in wanted if job not in done]
    write_index(cfg.out_dir, index)

    bar = tqdm(
        total=len(wanted) * cfg.clips_per_shard,
        initial=(len(wanted) - len(todo)) * cfg.clips_per_shard,
        unit="clip",
        desc=f"collect {os.path.basename(os.path.normpath(cfg.out_dir))}",
        disable=not cfg.progress,
    )
    t0 = time.perf_counter()
    frames_made = 0

    def finish(entry: dict[str, Any]) -> None:
        nonlocal frames_made
        index["shards"].append(entry)
        write_index(cfg.out_dir, index)  # after the shard file: the index never lists a missing shard
        frames_made += entry["num_frames"]
        bar.update(entry["num_clips"])
        bar.set_postfix(fps=f"{frames_made / (time.perf_counter() - t0):.0f}")

    try:
        if cfg.workers == 1 or len(todo) <= 1:
            gen = ClipGenerator(cfg.generation) if todo else None
            try:
                for split, shard in todo:
                    finish(make_shard(gen, cfg, split, shard))  # type: ignore[arg-type]
            finally:
                if gen is not None:
                    gen.close()
        else:
            # spawn: safe next to CUDA/threads in the parent, and each worker starts its own game.
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(cfg.workers, len(todo))) as pool:
                for entry in pool.imap_unordered(_worker_shard, [(cfg, s, k) for s, k in todo]):
                    finish(entry)
    finally:
        bar.close()
    return index
