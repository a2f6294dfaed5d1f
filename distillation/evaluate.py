"""Score a world model against the real game (ViZDoom) on held-out maps: replay, controllability, stability.

    python -m distillation.evaluate --model runs/doom_student/bundle --clips 100 --horizon 16 --out eval/student
        --train-probe --probe eval/probe.pt --stability-steps 1000    # (one command)
    python -m distillation.evaluate --model teacher:runs/doom_teacher/export:runs/doom_vae/export --out eval/teacher
    python -m distillation.evaluate --model real --clips 8 --horizon 4 --out eval/real    # harness self-check

--model: a world bundle folder (causal, streamed step by step), ``default`` (the embedded Doom world), a preset
name with weights (``doom-untrained``: random weights, the floor of the stability curves),
``teacher:<teacher export>:<vae export>[:<light decoder>]`` (bidirectional, whole clips; longer horizons chain
clips from the last generated frame), ``vae:<vae export>[:<light decoder>]`` (the real clip through the VAE: the
reconstruction ceiling), ``real`` (the game replayed: must give capped PSNR and SSIM 1), ``noise`` (the floor),
``static`` (the start frame held: the baseline to beat), ``static:<vae export>[:<light decoder>]`` (the held
start frame through the VAE: the baseline at a decoder's fidelity), ``tiny-random`` (a tiny random causal world,
48x32).

Besides PSNR / SSIM (which reward blur) every run measures, against the real frames of the same clips, a
sharpness ratio (gradient energy of the generated frames over that of the real frames, and over that of the real
frames through the model's own VAE where it decodes VAE latents: 1.0 = the decoder's ceiling) and a Fréchet
distance in the features of a network trained here on real training-map frames (--features, default
checkpoints/features; `python -m distillation.evaluation.features --train` trains one), over frames 1..16 of
every clip and per horizon step, with the real frames split against themselves as the noise floor.

Outputs in --out: report.json (headline numbers, per-step PSNR / SSIM, sharpness and Fréchet distance under
"realism", probe accuracy, stability curves, and the exact definitions under "alignment"), metrics.npz, PNG plots
vs horizon, side-by-side MP4s (real | generated), contact_sheet.png. See distillation/evaluation/ for what every
number means.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lingbot_env.video import MISSING, mp4_available


def _size(text: str) -> tuple[int, int]:
    from lingbot_env.doom.game import parse_size

    try:
        return parse_size(text, "--size")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'LO,HI' noise levels, e.g. 0.6,1, got {text!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise argparse.ArgumentTypeError(f"noise levels need 0 <= LO < HI <= 1, got {text!r}")
    return lo, hi


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'MIN,MAX', got {text!r}") from None
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    from distillation.evaluation.models import MODEL_SPECS
    from distillation.evaluation.patterns import PATTERNS

    ap = argparse.ArgumentParser(
        prog="python -m distillation.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", required=True, help="model under test: " + " | ".join(MODEL_SPECS))
    ap.add_argument("--out", default="runs/eval", help="output folder (default: runs/eval)")
    g = ap.add_argument_group("replay")
    g.add_argument("--clips", type=int, default=100, help="clips replayed (default 100)")
    g.add_argument("--horizon", type=int, default=16, help="actions per clip = horizon steps of 4 frames (default 16)")
    g.add_argument("--batch-size", type=int, default=4, help="clips per model call (default 4)")
    g.add_argument("--split", default="val", choices=("val", "train"), help="maps to replay on (default: held out)")
    g.add_argument("--recorded-fraction", type=float, default=0.5, help="share of clips with explorer actions")
    g.add_argument(
        "--patterns",
        default=",".join(PATTERNS),
        help=f"scripted patterns, comma-separated (default: all of {list(PATTERNS)})",
    )
    g.add_argument(
        "--prefix-steps", type=_range, default=(4, 16), help="explorer steps before the start frame: MIN,MAX"
    )
    g.add_argument(
        "--videos",
        type=int,
        default=4,
        help="clips kept for side-by-side MP4s and the contact sheet (default 4; without imageio-ffmpeg only the "
        "sheet)",
    )
    g = ap.add_argument_group("controllability (inverse-dynamics probe)")
    g.add_argument("--probe", default=None, help="probe file to load (or to write with --train-probe)")
    g.add_argument("--train-probe", action="store_true", help="train the probe on real train-map data first")
    g.add_argument("--probe-steps", type=int, default=1500, help="probe training steps (default 1500)")
    g.add_argument("--probe-data-steps", type=int, default=6000, help="real game steps to train on (default 6000)")
    g.add_argument("--probe-val-steps", type=int, default=400, help="real game steps for probe validation")
    g = ap.add_argument_group("sharpness and realism")
    g.add_argument(
        "--features",
        default=None,
        help="feature network folder for the Fréchet distance (default: checkpoints/features if it is there)",
    )
    g.add_argument("--no-features", action="store_true", help="no Fréchet distance")
    g.add_argument(
        "--no-decoder-reference",
        action="store_true",
        help="skip the real clips through the model's VAE (the sharpness_vs_vae denominator; one VAE pass per clip)",
    )
    g.add_argument(
        "--teacher-forced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score next-step prediction from the real past frames (causal worlds; GameNGen's measure)",
    )
    g = ap.add_argument_group("stability (causal models)")
    g.add_argument("--stability-steps", type=int, default=1000, help="rollout steps (0 = skip; default 1000)")
    g.add_argument("--stability-rollouts", type=int, default=1, help="rollouts, one per held-out map (default 1)")
    g.add_argument("--stability-policy", default="explorer", help="'explorer' or a pattern name")
    g.add_argument("--no-stability-video", action="store_true", help="do not write stability.mp4")
    g = ap.add_argument_group("models")
    g.add_argument(
        "--size", type=_size, default=(128, 96), help="frame size WxH for 'real', 'noise' and 'static' (128x96)"
    )
    g.add_argument("--wad", default="freedoom2", help="game data (default freedoom2)")
    g.add_argument("--teacher-steps", type=int, default=50, help="teacher sampling steps (default 50)")
    g.add_argument("--guidance", type=float, default=None, help="teacher CFG scale (default: the Doom teacher's)")
    g.add_argument(
        "--guide-actions",
        choices=("auto", "yes", "no"),
        default="auto",
        help="teacher guidance along the actions as well as the caption (auto: if it was trained with action dropout)",
    )
    g.add_argument(
        "--guidance-interval",
        type=_interval,
        default=None,
        help="LO,HI: guide the teacher only at noise levels LO <= sigma <= HI, e.g. 0.6,1 (default: every step)",
    )
    g = ap.add_argument_group("run")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def check_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject bad values with a clear message before anything is loaded or played."""
    positive = {"--clips": args.clips, "--horizon": args.horizon, "--batch-size": args.batch_size}
    positive["--teacher-steps"] = args.teacher_steps
    for flag, v in positive.items():
        if v < 1:
            ap.error(f"{flag} must be >= 1, got {v}")
    for flag, v in {
        "--videos": args.videos,
        "--stability-steps": args.stability_steps,
        "--probe-steps": args.probe_steps,
        "--probe-val-steps": args.probe_val_steps,
    }.items():
        if v < 0:
            ap.error(f"{flag} must be >= 0, got {v}")
    if args.stability_rollouts < 1 or args.probe_data_steps < 1:
        ap.error("--stability-rollouts and --probe-data-steps must be >= 1")
    if (args.videos or not args.no_stability_video) and not mp4_available():  # say so now, not at the end
        # The --videos clips are still kept: the contact sheet (a PNG) needs no ffmpeg.
        print(f"warning: {MISSING}; no MP4s this run (the contact sheet is still written)", file=sys.stderr)
        args.no_stability_video = True
    if args.probe and not args.train_probe and not Path(args.probe).is_file():
        ap.error(f"--probe {args.probe} does not exist (add --train-probe to train it)")
    if args.features and args.no_features:
        ap.error("--features and --no-features exclude each other")
    if args.features and not Path(args.features).is_dir():
        ap.error(f"--features {args.features} is not a folder (python -m distillation.evaluation.features trains one)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from distillation.data.splits import MapSplit
    from distillation.evaluation.features import DEFAULT_DIR as FEATURES_DIR
    from distillation.evaluation.features import FrameFeatures
    from distillation.evaluation.game import game_config
    from distillation.evaluation.models import TeacherSampling, decoder_reference, model_from_spec
    from distillation.evaluation.probe import Probe, ProbeConfig, train_probe
    from distillation.evaluation.replay import ReplayConfig, run_replay
    from distillation.evaluation.report import SideBySideVideo, write_report
    from distillation.evaluation.stability import StabilityConfig, run_stability
    from world_model.bundle import WorldNotAvailableError

    ap = build_parser()
    args = ap.parse_args(argv)
    check_args(ap, args)
    try:
        replay_cfg = ReplayConfig(
            clips=args.clips,
            horizon=args.horizon,
            batch_size=args.batch_size,
            split=args.split,
            recorded_fraction=args.recorded_fraction,
            patterns=tuple(p.strip() for p in args.patterns.split(",") if p.strip()),
            prefix_steps=args.prefix_steps,
            seed=args.seed,
            keep_clips=args.videos,
        )
        stab_cfg = StabilityConfig(
            steps=max(args.stability_steps, 1),
            rollouts=args.stability_rollouts,
            policy=args.stability_policy,
            seed=args.seed,
        )
        maps = MapSplit(args.wad)
    except ValueError as e:
        ap.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t0 = time.perf_counter()
    try:
        model = model_from_spec(
            args.model,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            size=args.size,
            wad=args.wad,
            teacher=TeacherSampling(
                steps=args.teacher_steps,
                guidance=args.guidance,
                guide_actions={"auto": None, "yes": True, "no": False}[args.guide_actions],
                interval=args.guidance_interval,
            ),
        )
    except (ValueError, WorldNotAvailableError) as e:
        ap.error(str(e))
    game = game_config(model.frame_size, args.wad)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {"load": time.perf_counter() - t0}

    probe, probe_skipped, notes = None, None, []
    t = time.perf_counter()
    if args.train_probe:
        cfg = ProbeConfig(
            steps=args.probe_steps,
            data_steps=args.probe_data_steps,
            val_data_steps=args.probe_val_steps,
            seed=args.seed,
        )
        probe = train_probe(game, maps.maps("train"), cfg, args.device, progress)
        path = probe.save(args.probe or out / "probe.pt")
        print(f"probe saved to {path}: {json.dumps(probe.metrics.get('heldout_episode_accuracy', {}))}")
    elif args.probe:
        probe = Probe.load(args.probe, args.device)
    else:
        probe_skipped = "no probe: pass --probe FILE or --train-probe"
    if probe is not None and tuple(probe.frame_size) != tuple(model.frame_size):
        notes.append(f"the probe was trained on {probe.frame_size} frames, the model makes {model.frame_size}")
    seconds["probe"] = time.perf_counter() - t

    features = None
    if not args.no_features:
        folder = Path(args.features) if args.features else FEATURES_DIR
        if args.features or (folder / "features.json").is_file():
            try:
                features = FrameFeatures.load(folder)
            except (FileNotFoundError, ValueError) as e:
                ap.error(str(e))
        else:
            notes.append(f"no feature network in {folder}: no Fréchet distance")
    reference = None if args.no_decoder_reference else decoder_reference(model)

    t = time.perf_counter()
    forced = args.teacher_forced and callable(getattr(model, "teacher_forced", None))
    if args.teacher_forced and not forced:
        notes.append(f"no teacher-forced PSNR: {model.name} is not a causal streaming world")
    replay = run_replay(
        model, replay_cfg, game, maps, probe, progress, features=features, reference=reference, teacher_forced=forced
    )
    seconds["replay"] = time.perf_counter() - t

    stability, stability_skipped = None, None
    t = time.perf_counter()
    if args.stability_steps == 0:
        stability_skipped = "--stability-steps 0"
    elif not model.causal:
        stability_skipped = f"{model.name} is not a causal streaming model"
    else:
        video = None if args.no_stability_video else SideBySideVideo(out / "stability.mp4", game.video_fps)
        sink = None if video is None else (lambda real, gen, r: video.add(real, gen) if r == 0 else None)
        try:
            stability = run_stability(model, stab_cfg, game, maps, sink, progress, probe=probe, features=features)
        finally:
            if video is not None:
                video.close()
    seconds["stability"] = time.perf_counter() - t
    model.close()
    seconds["total"] = time.perf_counter() - t0
    report = write_report(
        out,
        model={**model.describe(), "spec": args.model},
        game=game.to_dict(),
        replay=replay,
        stability=stability,
        stability_skipped=stability_skipped,
        probe_skipped=probe_skipped,
        fps=game.video_fps,
        extra={
            "command": ["python", "-m", "distillation.evaluate", *(sys.argv[1:] if argv is None else argv)],
            "device": str(args.device),
            "torch_threads": torch.get_num_threads(),
            "seconds": seconds,
            "notes": notes,
        },
    )
    print(json.dumps({"out": str(out), **report["headline"]}, indent=1))
    print(summary_line(report["headline"]))
    return report


def summary_line(h: dict[str, Any]) -> str:
    """One line of the numbers to quote (frames 1..16)."""

    def f(key: str, fmt: str) -> str:
        v = h.get(key)
        return "n/a" if v is None else format(v, fmt)

    return (
        f"frames 1-16: PSNR {f('psnr_first16', '.2f')} dB, SSIM {f('ssim_first16', '.3f')}, "
        f"sharpness {f('sharpness_vs_real_first16', '.3f')} of real / {f('sharpness_vs_vae_first16', '.3f')} of "
        f"VAE, Fréchet {f('frechet_first16', '.3f')} (real split floor {f('frechet_real_split_first16', '.3f')}), "
        f"probe ratio {f('probe_accuracy_ratio', '.2f')}"
    )


if __name__ == "__main__":
    main()
