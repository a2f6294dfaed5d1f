"""The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian (mean, covariance).

    d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

the squared 2-Wasserstein distance between the Gaussians N(mu_a, S_a) and N(mu_b, S_b) (FID's formula, here on
the features of a network trained on real game frames, :mod:`distillation.evaluation.features`). The matrix
square root is taken through symmetric eigendecompositions (``numpy.linalg.eigh``), so it stays real and
finite for singular covariances (fewer samples than dimensions), where ``scipy.linalg.sqrtm(S_a @ S_b)`` can
return complex noise. Tr((S_a S_b)^1/2) = Tr((S_a^1/2 S_b S_a^1/2)^1/2) since the two matrices are similar.

The estimate is biased upwards by the finite sample (two sets drawn from one distribution give d² > 0, about
in proportion to dimensions / samples): compare distances only at the same number of frames, and read them
against the split of the real frames against themselves (the harness reports it as the noise floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``mu`` [D] and covariance ``sigma`` [D, D] (float64) of ``count`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Features [N, D] (N >= 2) -> their mean and (unbiased, N - 1) covariance in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return GaussianStats(x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), len(x))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_stats(a: GaussianStats, b: GaussianStats) -> float:
    """d² between the Gaussians of two :class:`GaussianStats` (see the module docstring); >= 0."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    root_a = _psd_sqrt(a.sigma)
    inner = root_a @ b.sigma @ root_a
    w = np.linalg.eigvalsh((inner + inner.T) / 2)
    cross = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    diff = a.mu - b.mu
    d2 = float(diff @ diff) + float(np.trace(a.sigma)) + float(np.trace(b.sigma)) - 2.0 * cross
    return max(d2, 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """d² between feature sets ``a`` [N, D] and ``b`` [M, D] (each summarised by its mean and covariance)."""
    return frechet_distance_stats(gaussian_stats(a), gaussian_stats(b))
