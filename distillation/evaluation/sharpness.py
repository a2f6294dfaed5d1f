"""Sharpness: the gradient energy of frames, and its ratio between generated and real frames.

PSNR rewards blur (the mean of the plausible futures is blurry and scores well), so the harness also asks how
much fine detail a model draws. The gradient energy of a frame is the mean squared finite difference of its
luminance (BT.601 luma on [0, 1] pixels) along x and along y, averaged over the two directions. The sharpness
ratio of a model is the mean gradient energy of its frames over that of the same real frames (a ratio of
means over all clips and frames of a window, not a mean of per-frame ratios, which dark, flat frames would
dominate); its per-clip spread gives the standard error. Two denominators:

- ``vs_real``: the real game frames themselves;
- ``vs_vae``: the same real frames passed through the model's own VAE encoder and decoder (where the model has
  one): the decoder's own ceiling is 1.0, so a world model decoding through it can be read against the detail
  the decoder can draw at all.

A ratio below 1 is blur; above 1 is extra high-frequency content, e.g. noise (uniform noise scores far above
1), which is why the Fréchet distance (:mod:`distillation.evaluation.realism`) is reported next to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(frames: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 luma [..., H, W] on [0, 1]."""
    x = np.asarray(frames)
    if x.shape[-1] != 3:
        raise ValueError(f"frames must be [..., H, W, 3], got {x.shape}")
    return (x.astype(np.float32) @ LUMA) / 255.0


def gradient_energy(frames: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float64 [...]: per frame, (mean (dY/dx)² + mean (dY/dy)²) / 2 of the luma Y."""
    y = luminance(frames)
    if y.shape[-1] < 2 or y.shape[-2] < 2:
        raise ValueError(f"frames need at least 2x2 pixels, got {y.shape[-2:]}")
    dx = np.diff(y, axis=-1)
    dy = np.diff(y, axis=-2)
    return 0.5 * (np.square(dx).mean((-2, -1), dtype=np.float64) + np.square(dy).mean((-2, -1), dtype=np.float64))


def sharpness_ratio(generated: np.ndarray, reference: np.ndarray) -> float:
    """Ratio of the mean gradient energy of ``generated`` to that of ``reference`` frames (uint8 [..., H, W, 3])."""
    return ratio_of_means(gradient_energy(generated), gradient_energy(reference))


def ratio_of_means(num: np.ndarray, den: np.ndarray) -> float:
    d = float(np.mean(den))
    return float(np.mean(num)) / d if d > 0 else float("nan")


def _window_ratio(num: np.ndarray, den: np.ndarray) -> dict[str, Any]:
    """Energies [N, k] of one window of frames -> the ratio over all of it and its per-clip sem."""
    clip_ratio = num.mean(1) / np.maximum(den.mean(1), 1e-12)
    n = len(num)
    return {
        "ratio": ratio_of_means(num, den),
        "clip_sem": float(clip_ratio.std() / np.sqrt(n)) if n > 1 else None,
    }


def sharpness_summary(generated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Per-frame energies [N, 1 + 4n] of generated and reference frames -> the report's ratios.

    ``first16``: frames 1..16; ``mean``: frames 1..4n; ``per_step``: step 0 = frame 0, step j = frames 4j-3..4j
    (the same windows as PSNR / SSIM).
    """
    g, r = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if g.shape != r.shape or g.ndim != 2 or (g.shape[1] - 1) % 4:
        raise ValueError(f"energies must both be [N, 1 + 4n], got {g.shape} and {r.shape}")
    n = (g.shape[1] - 1) // 4
    first16 = _window_ratio(g[:, 1:17], r[:, 1:17])
    steps = [ratio_of_means(g[:, :1], r[:, :1])]
    steps += [ratio_of_means(g[:, 4 * j - 3 : 4 * j + 1], r[:, 4 * j - 3 : 4 * j + 1]) for j in range(1, n + 1)]
    return {
        "first16": first16["ratio"],
        "first16_clip_sem": first16["clip_sem"],
        "mean": ratio_of_means(g[:, 1:], r[:, 1:]),
        "per_step": steps,
        "energy_generated_first16": float(g[:, 1:17].mean()),
        "energy_reference_first16": float(r[:, 1:17].mean()),
    }
