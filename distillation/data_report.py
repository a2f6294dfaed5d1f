"""Report on a collected data folder: ``python -m distillation.data_report DATA --out REPORT_DIR``.

Prints frame/clip counts per split and map and the action statistics, and writes ``report.json``,
``actions.png`` (key-combination and yaw/pitch histograms), ``coverage_{wad}_{map}.png`` (top-down
visited positions over the map's lines) and ``contact_sheet.png`` (sample frames).
"""

from __future__ import annotations

import argparse
import sys

from distillation.data.report import make_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distillation.data_report",
        description="Summarise a folder written by `python -m distillation.collect`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data", help="data folder with index.json")
    p.add_argument("--out", default=None, help="report folder (default: DATA/report)")
    p.add_argument("--samples", type=int, default=48, help="frames on the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="seed for picking sample frames")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    out = a.out or f"{a.data.rstrip('/')}/report"
    try:
        s = make_report(a.data, out, samples=a.samples, seed=a.seed)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"data: {s['root']}  frame size {s['frame_size'][0]}x{s['frame_size'][1]}, {s['frames_per_clip']} frames/clip"
    )
    for split, v in s["splits"].items():
        maps = ", ".join(f"{m}:{n}" for m, n in v["maps"].items())
        print(f"  {split}: {v['clips']} clips, {v['frames']} frames; frames per map: {maps}")
    act = s["actions"]
    print(f"  actions: {act['steps']} steps; key press rate {act['key_press_rate']}")
    print(f"  top combos: {dict(list(act['combos'].items())[:6])}")
    print(f"  mean |yaw| {act['yaw_abs_mean']:.3f}, mean |pitch| {act['pitch_abs_mean']:.3f}")
    print(f"  wrote {len(s['files'])} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
