"""The evaluation's outputs in one folder.

- ``report.json``: everything measured (see :func:`write_report` for the layout) and how it was measured;
- ``metrics.npz``: per-clip, per-frame PSNR / SSIM, gradient energies and realism features, and the stability
  curves, for later analysis;
- ``psnr_vs_horizon.png``, ``ssim_vs_horizon.png``: mean +- std over clips per horizon step, with the recorded and
  scripted clips separately; ``probe_accuracy_vs_horizon.png`` (with a probe); ``stability.png`` (causal models);
- ``videos/clip_XXX.mp4``: real | generated side by side; ``stability.mp4`` is written while the rollout runs
  (:class:`SideBySideVideo` as the rollout's frame sink);
- ``contact_sheet.png``: for the kept clips, real and generated frames at a few horizon steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from distillation.evaluation.plots import Series, line_plot, panel_plot
from distillation.evaluation.realism import DEFINITIONS as REALISM_DEFINITIONS
from distillation.evaluation.realism import headline as realism_headline
from distillation.evaluation.replay import RECORDED, KeptClip, ReplayResult, per_step
from distillation.evaluation.stability import StabilityResult
from lingbot_env.video import MISSING, mp4_available, mp4_writer

FORMAT = "lingbot-world-eval"
ALIGNMENT = {
    "frames": "a clip of n actions has 1 + 4n frames; frame 0 is the real start frame (for a model: its own "
    "rendering of it, e.g. the VAE reconstruction); action i (0-based) is held for frames 4i+1..4i+4",
    "horizon_step": "step 0 = frame 0; step j >= 1 = frames 4j-3..4j, the answer to action j-1 (one latent frame)",
    "per_step": "mean over a step's frames of the per-frame score, then mean / std / sem over clips",
    "mean": "mean over steps 1..n (frame 0 excluded)",
    "first16": "mean over frames 1..16 (steps 1..4 = the first 4 latent frames after the start frame)",
    "psnr": "dB on [0, 1] pixels, per frame, capped at psnr_cap for identical frames",
    "ssim": "Gaussian window 11, sigma 1.5, per channel then averaged, per frame",
    "teacher_forced_psnr": "PSNR of next-step prediction: step j generated from the real clip's VAE latents of "
    "steps 0..j-1 (cache and decoder state), not from the model's own frames; GameNGen's measure",
    **REALISM_DEFINITIONS,
}


# -- frames for humans ----------------------------------------------------------------------------------------------
def _scale_for(height: int, target: int = 192) -> int:
    return max(1, math.ceil(target / height))


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return frame if scale == 1 else frame.repeat(scale, 0).repeat(scale, 1)


class SideBySideVideo:
    """An MP4 of ``real | generated`` frames (nearest-upscaled to >= 192 px high), with a label strip on top."""

    def __init__(self, path: str | Path, fps: float, labels: tuple[str, str] = ("real game", "generated")) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.labels = fps, labels
        self._writer: Any = None
        self._header: np.ndarray | None = None
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        self.scale = _scale_for(h)
        fw = w * self.scale
        img = Image.new("RGB", (2 * fw + 4, 16), (0, 0, 0))
        d = ImageDraw.Draw(img)
        font = ImageFont.load_default()
        d.text((4, 2), self.labels[0], fill=(255, 255, 255), font=font)
        d.text((fw + 8, 2), self.labels[1], fill=(255, 255, 255), font=font)
        self._header = np.asarray(img)
        # Even sizes by construction (2x scale or more, 4-px gap, 16-px header): libx264's yuv420p needs them.
        self._writer = mp4_writer(self.path, self.fps, codec="libx264", quality=8, macro_block_size=1)

    def add(self, real: np.ndarray, generated: np.ndarray, *_: Any) -> None:
        """Append frames: ``real`` and ``generated`` uint8 [k, H, W, 3] (extra args: the rollout sink signature)."""
        if self._writer is None:
            self._open(*real.shape[1:3])
        for r, g in zip(real, generated):
            r, g = _upscale(r, self.scale), _upscale(g, self.scale)
            gap = np.zeros((r.shape[0], 4, 3), np.uint8)
            frame = np.concatenate([self._header, np.concatenate([r, gap, g], axis=1)], axis=0)
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
            self._writer.append_data(frame)
            self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def contact_sheet(path: str | Path, clips: list[KeptClip], model_name: str, max_columns: int = 8) -> Path:
    """Rows: for each kept clip, real then generated; columns: the last frame of a few horizon steps."""
    n = (clips[0].real.shape[0] - 1) // 4
    steps = sorted({0, *np.unique(np.round(np.geomspace(1, n, num=max_columns - 1)).astype(int)).tolist()})
    h, w = clips[0].real.shape[1:3]
    scale = _scale_for(h, 96)
    fh, fw = h * scale, w * scale
    label_w, head_h, pad = 110, 18, 2
    img = Image.new("RGB", (label_w + len(steps) * (fw + pad), head_h + 2 * len(clips) * (fh + pad)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for c, j in enumerate(steps):
        d.text((label_w + c * (fw + pad) + 2, 3), f"step {j} (frame {4 * j})", fill=(0, 0, 0), font=font)
    for r, clip in enumerate(clips):
        for k, (frames, label) in enumerate(((clip.real, "real"), (clip.generated, model_name[:14]))):
            top = head_h + (2 * r + k) * (fh + pad)
            d.text((2, top + 2), label, fill=(0, 0, 0), font=font)
            if k == 0:
                d.text((2, top + 16), clip.source[:18], fill=(90, 90, 90), font=font)
                d.text((2, top + 30), clip.map, fill=(90, 90, 90), font=font)
            else:
                d.text((2, top + 16), f"{clip.psnr:.1f} dB", fill=(90, 90, 90), font=font)
            for c, j in enumerate(steps):
                img.paste(Image.fromarray(_upscale(frames[4 * j], scale)), (label_w + c * (fw + pad), top))
    img.save(path)
    return Path(path)


# -- plots ----------------------------------------------------------------------------------------------------------
def _horizon_plot(path: Path, replay: ReplayResult, metric: str, unit: str) -> Path:
    values = getattr(replay, metric)
    steps = per_step(values)
    x = np.arange(steps.shape[1])
    sources = np.array(replay.sources)
    series = [Series(f"all ({len(steps)} clips)", steps.mean(0), band=steps.std(0))]
    recorded = sources == RECORDED
    if recorded.any() and (~recorded).any():
        series.append(Series("recorded actions", steps[recorded].mean(0)))
        series.append(Series("scripted actions", steps[~recorded].mean(0)))
    title = f"{metric.upper()} vs horizon (mean +- std over clips; step 0 = start frame)"
    return line_plot(path, x, series, title, "horizon step (1 step = 4 frames)", unit)


def _probe_plot(path: Path, ctrl: dict[str, Any]) -> Path:
    r, g = ctrl["real"], ctrl["generated"]
    x = np.arange(1, len(r["per_step_joint"]) + 1)
    series = [
        Series("real: keys+turn", r["per_step_joint"]),
        Series("generated: keys+turn", g["per_step_joint"]),
        Series("real: turn", r["per_step_turn"], colour=(150, 190, 220)),
        Series("generated: turn", g["per_step_turn"], colour=(240, 190, 140)),
    ]
    title = f"inverse-dynamics probe accuracy (generated / real, keys+turn: {_fmt_ratio(ctrl['headline_ratio'])})"
    return line_plot(path, x, series, title, "horizon step", "accuracy", y_range=(0.0, 1.0))


def _fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _pair(curves: dict[str, np.ndarray], name: str) -> list[Series]:
    return [Series("generated", curves[f"gen_{name}"]), Series("real game", curves[f"real_{name}"])]


def _stability_plot(path: Path, stab: StabilityResult) -> Path:
    with np.errstate(all="ignore"):  # steps no rollout reached are NaN and leave gaps in the lines
        curves = {k: np.nanmean(v, axis=0) for k, v in stab.per_step.items()}
    x = np.arange(1, stab.config.steps + 1)
    panels = [
        ("mean brightness per step", "0-255", _pair(curves, "brightness")),
        ("contrast (pixel std) per step", "0-255", _pair(curves, "contrast")),
        ("PSNR to the real game", "dB", [Series("generated vs real", curves["psnr"])]),
        ("SSIM to the real game", "SSIM", [Series("generated vs real", curves["ssim"])]),
    ]
    return panel_plot(path, x, panels, "rollout step (1 step = 4 frames)")


# -- the report -----------------------------------------------------------------------------------------------------
def _headline(replay: ReplayResult, ctrl: dict[str, Any] | None, stab: dict[str, Any] | None) -> dict[str, Any]:
    s = replay.summary()
    out = {
        "psnr_mean": s["psnr"]["mean"],
        "ssim_mean": s["ssim"]["mean"],
        "psnr_first16": s["psnr"]["first16"],
        "ssim_first16": s["ssim"]["first16"],
        "psnr_last_step": s["psnr"]["last_step"],
        **realism_headline(replay.realism),
    }
    if s["teacher_forced_psnr"] is not None:
        out["teacher_forced_psnr_mean"] = s["teacher_forced_psnr"]["mean"]
    if ctrl is not None:
        out["probe_accuracy_real"] = ctrl["real"]["joint"]
        out["probe_accuracy_generated"] = ctrl["generated"]["joint"]
        out["probe_accuracy_ratio"] = ctrl["headline_ratio"]
    if stab is not None:
        out["stability_psnr_drift"] = stab["psnr"]["drift"]
        out["stability_brightness_drift"] = stab["gen_brightness"]["drift"]
        out["stability_contrast_drift"] = stab["gen_contrast"]["drift"]
        end = stab["end"]
        out["stability_end_brightness_ratio"] = end["brightness_ratio"]
        out["stability_end_contrast_ratio"] = end["contrast_ratio"]
        out["stability_end_brightness_variation_ratio"] = end.get("brightness_variation_ratio")
        out["stability_end_probe_ratio"] = end["probe_ratio"]
        out["stability_end_frechet"] = end.get("frechet_end")
        out["stability_start_frechet"] = end.get("frechet_start")
    return out


def write_report(
    out_dir: str | Path,
    *,
    model: dict[str, Any],
    game: dict[str, Any],
    replay: ReplayResult,
    stability: StabilityResult | None = None,
    stability_skipped: str | None = None,
    probe_skipped: str | None = None,
    fps: float = 17.5,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every output into ``out_dir``; return the report dict (also ``report.json``).

    Layout: ``headline`` (the numbers to quote), ``model``, ``game`` (the real game's config), ``alignment`` (how
    frames, steps and means are defined), ``replay`` (PSNR / SSIM per step, per source, per map counts),
    ``realism`` (sharpness ratios and Fréchet distances against the real frames, per step and over frames 1..16),
    ``controllability`` (probe accuracy real / generated / ratio, or ``skipped``), ``stability`` (curves and
    drift, or ``skipped``), ``files``, plus ``extra`` (command line, timings).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    files["psnr_plot"] = _horizon_plot(out / "psnr_vs_horizon.png", replay, "psnr", "PSNR (dB)").name
    files["ssim_plot"] = _horizon_plot(out / "ssim_vs_horizon.png", replay, "ssim", "SSIM").name
    ctrl = replay.controllability
    if ctrl is not None:
        files["probe_plot"] = _probe_plot(out / "probe_accuracy_vs_horizon.png", ctrl).name
    stab = stability.summary() if stability is not None else None
    if stability is not None and any(stability.steps_run):
        files["stability_plot"] = _stability_plot(out / "stability.png", stability).name
        if (out / "stability.mp4").exists():
            files["stability_video"] = "stability.mp4"
    videos = []
    mp4 = mp4_available()
    if replay.kept and not mp4:  # the kept clips still make the contact sheet below
        files["videos_skipped"] = MISSING
    for i, clip in enumerate(replay.kept if mp4 else []):
        video = SideBySideVideo(out / "videos" / f"clip_{i:03d}.mp4", fps, ("real game", model["name"]))
        video.add(clip.real, clip.generated)
        video.close()
        videos.append(f"videos/{video.path.name}")
    files["videos"] = videos
    if replay.kept:
        files["contact_sheet"] = contact_sheet(out / "contact_sheet.png", replay.kept, model["name"]).name
    arrays: dict[str, np.ndarray] = {
        "psnr": replay.psnr,
        "ssim": replay.ssim,
        **({} if replay.teacher_forced_psnr is None else {"teacher_forced_psnr": replay.teacher_forced_psnr}),
        "sources": np.array(replay.sources),
        "maps": np.array(replay.maps),
        "seeds": np.array(replay.seeds),
    }
    arrays.update(replay.realism_arrays)
    if stability is not None:
        arrays.update({f"stability_{k}": v for k, v in stability.per_step.items()})
    np.savez_compressed(out / "metrics.npz", **arrays)
    files["metrics"] = "metrics.npz"
    report = {
        "format": FORMAT,
        "version": 1,
        "headline": _headline(replay, ctrl, stab),
        "model": model,
        "game": game,
        "alignment": ALIGNMENT,
        "replay": replay.summary(),
        "realism": replay.realism if replay.realism is not None else {"skipped": "not measured"},
        "controllability": ctrl if ctrl is not None else {"skipped": probe_skipped or "no probe"},
        "stability": stab if stab is not None else {"skipped": stability_skipped or "not run"},
        "files": files,
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    return report


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"cannot write {type(v).__name__} to JSON")
