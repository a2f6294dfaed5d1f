"""Data report of a collected folder: counts, maps, action histogram, pose coverage and a contact sheet.

Images are drawn with Pillow only (matplotlib is not a dependency). Outputs in ``out_dir``:
``report.json``, ``actions.png``, ``coverage_{wad}_{map}.png`` per map, ``contact_sheet.png``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from distillation.data.shards import ShardReader, index_shards, load_index
from lingbot_env.actions import KEYS

_BG, _FG, _GRID = (255, 255, 255), (20, 20, 20), (170, 170, 170)
_SPLIT_COLOURS = {"train": (31, 119, 180), "val": (230, 120, 20)}


def _combo(keys: np.ndarray) -> str:
    pressed = [k for k, v in zip(KEYS, keys) if v > 0.5]
    return "+".join(pressed) if pressed else "none"


def _bars(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], labels: list[str], values: list[float], title: str
):
    x0, y0, x1, y1 = box
    draw.text((x0, y0), title, fill=_FG)
    top, bottom = y0 + 16, y1 - 24
    vmax = max(values) if values and max(values) > 0 else 1.0
    n = max(1, len(values))
    width = (x1 - x0) / n
    for i, (lab, v) in enumerate(zip(labels, values)):
        bx = x0 + i * width
        h = (bottom - top) * v / vmax
        draw.rectangle([bx + 2, bottom - h, bx + width - 2, bottom], fill=_SPLIT_COLOURS["train"])
        draw.text((bx + 2, bottom + 2), lab[:8], fill=_FG)
    draw.line([x0, bottom, x1, bottom], fill=_FG)


def _actions_png(path: str, combos: Counter, yaw: np.ndarray, pitch: np.ndarray) -> None:
    img = Image.new("RGB", (900, 660), _BG)
    d = ImageDraw.Draw(img)
    top = combos.most_common(12)
    total = max(1, sum(combos.values()))
    _bars(d, (20, 10, 880, 210), [k for k, _ in top], [v / total for k, v in top], "key combination frequency")
    edges = np.linspace(-1, 1, 22)
    for row, (name, vals) in enumerate((("yaw", yaw), ("pitch", pitch))):
        hist, _ = np.histogram(vals, bins=edges)
        labels = [f"{(a + b) / 2:+.1f}" if i % 3 == 0 else "" for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
        _bars(
            d,
            (20, 230 + 215 * row, 880, 430 + 215 * row),
            labels,
            hist.tolist(),
            f"{name} histogram (x: fraction of max rate)",
        )
    img.save(path)


def _coverage_png(
    path: str, xy: np.ndarray, lines: np.ndarray | None, title: str, colour: tuple[int, int, int]
) -> None:
    size, pad = 640, 24
    pts = [xy] + ([lines[:, :2], lines[:, 2:]] if lines is not None and len(lines) else [])
    allp = np.concatenate(pts, axis=0)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    scale = (size - 2 * pad) / max(float((hi - lo).max()), 1.0)

    def tr(p: np.ndarray) -> np.ndarray:
        # Map y grows north, image y grows down: flip so the plot is a normal top-down view.
        q = (p - lo) * scale + pad
        return np.stack([q[..., 0], size - q[..., 1]], axis=-1)

    img = Image.new("RGB", (size, size), _BG)
    d = ImageDraw.Draw(img)
    if lines is not None:
        for x1, y1, x2, y2 in np.concatenate([tr(lines[:, :2]), tr(lines[:, 2:])], axis=1):
            d.line([float(x1), float(y1), float(x2), float(y2)], fill=_GRID)
    for x, y in tr(xy):
        d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=colour)
    d.text((8, 6), title, fill=_FG)
    img.save(path)


def _contact_sheet(path: str, tiles: list[tuple[np.ndarray, str]], cols: int = 8) -> None:
    if not tiles:
        Image.new("RGB", (320, 40), _BG).save(path)
        return
    h, w = tiles[0][0].shape[:2]
    tw = 160
    th = round(h * tw / w)
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * (th + 14)), _BG)
    d = ImageDraw.Draw(sheet)
    for i, (frame, label) in enumerate(tiles):
        x, y = (i % cols) * tw, (i // cols) * (th + 14)
        sheet.paste(Image.fromarray(frame).resize((tw, th), Image.BILINEAR), (x, y))
        d.text((x + 2, y + th), label[:26], fill=_FG)
    sheet.save(path)


def make_report(root: str, out_dir: str, samples: int = 48, seed: int = 0) -> dict[str, Any]:
    """Analyse the data folder ``root`` and write the report files to ``out_dir``; return the summary."""
    from lingbot_env.doom.wad import map_lines, resolve_wad

    index = load_index(root)
    if index is None:
        raise FileNotFoundError(f"no index.json in {root!r}")
    os.makedirs(out_dir, exist_ok=True)
    shards = index_shards(index, root)
    combos: Counter = Counter()
    yaws, pitches = [], []
    positions: dict[tuple[str, str], list[np.ndarray]] = {}
    split_of_map: dict[tuple[str, str], str] = {}
    per_split: dict[str, dict[str, Any]] = {}
    candidates: list[tuple[int, int]] = []
    for si, e in enumerate(shards):
        s = per_split.setdefault(e["split"], {"clips": 0, "frames": 0, "maps": Counter()})
        with ShardReader(os.path.join(root, e["file"])) as r:
            actions, poses = r.small("actions"), r.small("poses")
            for ci, m in enumerate(r.meta["clips"]):
                key = (m["wad"], m["map"])
                s["clips"] += 1
                s["frames"] += int(poses.shape[1])
                s["maps"][m["map"]] += int(poses.shape[1])
                positions.setdefault(key, []).append(poses[ci, :, :2])
                split_of_map[key] = e["split"]
                combos.update(_combo(a[:4]) for a in actions[ci])
                candidates.append((si, ci))
            yaws.append(actions[..., 4].ravel())
            pitches.append(actions[..., 5].ravel())
    yaw = np.concatenate(yaws) if yaws else np.zeros(0)
    pitch = np.concatenate(pitches) if pitches else np.zeros(0)
    _actions_png(os.path.join(out_dir, "actions.png"), combos, yaw, pitch)

    coverage = {}
    for (wad, map_name), chunks in sorted(positions.items()):
        xy = np.concatenate(chunks, axis=0)
        try:
            lines = map_lines(resolve_wad(wad), map_name)
        except (ValueError, FileNotFoundError, ImportError):
            lines = None  # WAD not installed here: plot positions only
        fname = f"coverage_{wad}_{map_name}.png"
        split = split_of_map[(wad, map_name)]
        _coverage_png(
            os.path.join(out_dir, fname),
            xy,
            lines,
            f"{wad} {map_name} ({split}): {len(xy)} frames",
            _SPLIT_COLOURS[split],
        )
        cells = np.unique(np.floor(xy / 64.0).astype(np.int64), axis=0)
        coverage[f"{wad}/{map_name}"] = {"split": split, "frames": len(xy), "cells_64": len(cells), "png": fname}

    rng = np.random.default_rng(seed)
    picks = (
        sorted(rng.choice(len(candidates), size=min(samples, len(candidates)), replace=False).tolist())
        if candidates
        else []
    )
    tiles, sample_info = [], []
    for p in picks:
        si, ci = candidates[p]
        with ShardReader(os.path.join(root, shards[si]["file"])) as r:
            frames, m = r.frames(ci), r.meta["clips"][ci]
        fi = int(rng.integers(len(frames)))
        tiles.append((frames[fi], f"{m['map']} f{fi}"))
        step = fi // int(index["frames_per_step"]) if fi else 0
        sample_info.append(
            {
                "shard": shards[si]["file"],
                "clip": ci,
                "frame": fi,
                "map": m["map"],
                "caption": m["captions"][min(step, len(m["captions"]) - 1)],
            }
        )
    _contact_sheet(os.path.join(out_dir, "contact_sheet.png"), tiles)

    total = max(1, sum(combos.values()))
    summary = {
        "root": os.path.abspath(root),
        "frame_size": index["frame_size"],
        "steps_per_clip": index["steps_per_clip"],
        "frames_per_clip": index["frames_per_clip"],
        "video_fps": index["video_fps"],
        "splits": {
            k: {"clips": v["clips"], "frames": v["frames"], "maps": dict(sorted(v["maps"].items()))}
            for k, v in per_split.items()
        },
        "total_frames": int(sum(v["frames"] for v in per_split.values())),
        "actions": {
            "steps": int(sum(combos.values())),
            "combos": {k: round(v / total, 4) for k, v in combos.most_common()},
            "key_press_rate": {
                k: round(sum(v for c, v in combos.items() if k in c.split("+")) / total, 4) for k in KEYS
            },
            "yaw_abs_mean": float(np.abs(yaw).mean()) if yaw.size else 0.0,
            "pitch_abs_mean": float(np.abs(pitch).mean()) if pitch.size else 0.0,
            "yaw_histogram": np.histogram(yaw, bins=np.linspace(-1, 1, 11))[0].tolist(),
            "pitch_histogram": np.histogram(pitch, bins=np.linspace(-1, 1, 11))[0].tolist(),
        },
        "coverage": coverage,
        "samples": sample_info,
        "files": ["report.json", "actions.png", "contact_sheet.png"] + [c["png"] for c in coverage.values()],
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
