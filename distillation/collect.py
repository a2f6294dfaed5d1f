"""Collect real-game (ViZDoom/Freedoom) clips into shards: ``python -m distillation.collect --help``.

Example: ``python -m distillation.collect --out data/doom160 --train-shards 64 --val-shards 8 --workers 16``.
Re-running the same command resumes (only shards missing from the index are made); raising the shard
counts extends the collection.
"""

from __future__ import annotations

import argparse
import json
import sys

from distillation.data.clips import DEFAULT_ENV, GenerationConfig
from distillation.data.collector import CollectConfig, collect
from distillation.data.policy import ExplorerConfig
from distillation.data.splits import MapSplit
from lingbot_env.actions import ActionSpec
from lingbot_env.doom.game import REWARD_MODES, SUPPORTED_RESOLUTIONS


def _maps(s: str | None) -> tuple[str, ...] | None:
    return None if s is None else tuple(m.strip() for m in s.split(",") if m.strip())


def build_parser() -> argparse.ArgumentParser:
    res = ", ".join(f"{w}x{h}" for w, h in SUPPORTED_RESOLUTIONS)
    p = argparse.ArgumentParser(
        prog="python -m distillation.collect",
        description="Play ViZDoom with an exploration policy and write clips of F = 4n+1 frames into resumable "
        "shards (index.json + {split}-NNNNN.npz). Train/val are split by map.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output data folder (resumed if it exists)")
    p.add_argument("--train-shards", type=int, default=8)
    p.add_argument("--val-shards", type=int, default=2)
    p.add_argument("--clips-per-shard", type=int, default=16)
    p.add_argument("--steps-per-clip", type=int, default=16, help="n: latent steps per clip (F = 4n+1 frames)")
    p.add_argument("--clips-per-episode", type=int, default=4)
    p.add_argument("--episodes-per-map", type=int, default=4)
    p.add_argument("--skip-steps", type=int, default=0, help="unrecorded steps at each episode start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="parallel game processes (one shard each at a time)")
    p.add_argument("--compress-level", type=int, default=1, help="zlib level 0-9")
    g = p.add_argument_group("game")
    g.add_argument("--wad", default="freedoom2", help="freedoom1, freedoom2 or a .wad path")
    g.add_argument("--val-maps", default=None, help="comma-separated held-out maps (default: per-WAD list)")
    g.add_argument("--train-maps", default=None, help="comma-separated training maps (default: all others)")
    g.add_argument("--resolution", default="160x120", help=f"ViZDoom render size, one of: {res}")
    g.add_argument("--frame-size", default=None, help="stored frame size WxH if different (frames are resized)")
    g.add_argument("--tics-per-frame", type=int, default=2, help="game tics per video frame (35/2 = 17.5 fps)")
    g.add_argument("--max-yaw", type=float, default=2.0, help="degrees per frame at |yaw| = 1")
    g.add_argument("--max-pitch", type=float, default=2.0, help="degrees per frame at |pitch| = 1")
    g.add_argument("--hud", action="store_true", help="draw the status bar")
    g.add_argument("--no-weapon", action="store_true", help="hide the player's weapon")
    g.add_argument("--no-monsters", action="store_true")
    g.add_argument("--no-god", action="store_true", help="the player can die (episodes end early)")
    g.add_argument("--no-random-start", action="store_true", help="always start at the map's player start")
    g.add_argument("--no-depth", action="store_true", help="no depth buffer (faster; vaguer captions)")
    g.add_argument("--skill", type=int, default=3)
    g.add_argument("--reward", default="explore", choices=REWARD_MODES)
    g.add_argument(
        "--policy", default="explorer", help="explorer, random or package.module:factory (factory(seed) -> policy)"
    )
    g.add_argument("--explorer-json", default=None, help="JSON object of ExplorerConfig overrides")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(a: argparse.Namespace) -> CollectConfig:
    env = DEFAULT_ENV.replace(
        wad=a.wad,
        resolution=a.resolution,
        frame_size=a.frame_size,
        tics_per_frame=a.tics_per_frame,
        action_spec=ActionSpec(max_yaw_deg_per_frame=a.max_yaw, max_pitch_deg_per_frame=a.max_pitch),
        hud=a.hud,
        weapon=not a.no_weapon,
        monsters=not a.no_monsters,
        god_mode=not a.no_god,
        random_start=not a.no_random_start,
        depth=not a.no_depth,
        skill=a.skill,
        reward=a.reward,
        map=MapSplit(a.wad, _maps(a.val_maps), _maps(a.train_maps)).maps("train")[0],
    )
    explorer = ExplorerConfig.from_dict(json.loads(a.explorer_json)) if a.explorer_json else ExplorerConfig()
    gen = GenerationConfig(
        env=env,
        maps=MapSplit(a.wad, _maps(a.val_maps), _maps(a.train_maps)),
        steps_per_clip=a.steps_per_clip,
        clips_per_episode=a.clips_per_episode,
        episodes_per_map=a.episodes_per_map,
        skip_steps=a.skip_steps,
        policy=a.policy,
        explorer=explorer,
    )
    return CollectConfig(
        out_dir=a.out,
        generation=gen,
        train_shards=a.train_shards,
        val_shards=a.val_shards,
        clips_per_shard=a.clips_per_shard,
        seed=a.seed,
        compress_level=a.compress_level,
        workers=a.workers,
        progress=not a.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    index = collect(cfg)
    clips = sum(e["num_clips"] for e in index["shards"])
    frames = sum(e["num_frames"] for e in index["shards"])
    mb = sum(e["bytes"] for e in index["shards"]) / 2**20
    print(f"{cfg.out_dir}: {len(index['shards'])} shards, {clips} clips, {frames} frames, {mb:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
