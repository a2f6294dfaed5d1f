"""Sharpness and realism of generated frames against the real frames of the same clips (besides PSNR / SSIM).

PSNR alone rewards blur: the mean of the plausible futures scores better than any one sharp future. Two numbers
that do not:

- the **sharpness ratio** (:mod:`~distillation.evaluation.sharpness`): gradient energy of the generated frames
  over that of the real frames (``vs_real``) and over that of the real frames passed through the model's own
  VAE (``vs_vae``, the decoder's ceiling = 1.0; for models that decode VAE latents). Below 1 = blur, above 1 =
  extra high frequencies, e.g. noise;
- the **Fréchet distance** (:mod:`~distillation.evaluation.frechet`) between the penultimate features
  (:mod:`~distillation.evaluation.features`, a network trained here on real training-map frames only) of the
  real and the generated frames: over frames 1..16 of every clip (``first16``), per horizon step (frames
  4j-3..4j of every clip), and over all generated frames. ``real_split_first16`` compares the real frames of
  half the clips with those of the other half (each map's clips alternate between the halves, so both cover
  every map): the noise floor of the estimate between *different* clips (with half the frames per set, so
  about twice that of a full-size comparison). A model is compared with the real frames of the *same* clips,
  whose content it shares, so its distance can lie well below this floor (the start frame held still does):
  read the split as the spread of the real frames' content, and compare models with each other and with the
  ``static`` and ``vae`` references on the same clips. ``vs_vae_first16``: generated against the real frames
  through the model's VAE; ``vae_vs_real_first16``: the decoder's own distance from the real frames.

Both noise and blur raise the Fréchet distance, while they move the sharpness ratio in opposite directions; read
together, they tell a blurry model from a noisy one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distillation.evaluation.frechet import frechet_distance
from distillation.evaluation.sharpness import gradient_energy, sharpness_summary

DEFINITIONS = {
    "sharpness": "gradient energy = (mean (dY/dx)^2 + mean (dY/dy)^2) / 2 of the BT.601 luma Y on [0, 1], per "
    "frame; ratio = mean energy of the generated frames / mean energy of the reference frames of the same clips "
    "and frames (ratio of means); vs_real: the real frames, vs_vae: the real frames through the model's own VAE "
    "encoder and decoder (1.0 = the decoder's ceiling)",
    "frechet": "|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r^1/2 S_g S_r^1/2)^1/2) of the penultimate features of the "
    "feature network (trained on real training-map frames), over the frames of a window of every clip; biased up "
    "by the finite sample: compare at equal frame counts; real_split = the real frames of half the clips vs the "
    "other half (each map's clips alternate between the halves): different content, so a model scored on the "
    "same clips can lie below it",
}


def _fd(a: np.ndarray, b: np.ndarray) -> float | None:
    return frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else None


class RealismScores:
    """Accumulates, batch by batch, the gradient energies and features of real, generated and (if given) real
    frames through the model's decoder; :meth:`summary` gives the report's ``realism`` section."""

    def __init__(self, features: Any | None = None) -> None:
        self.features = features
        self.energy: dict[str, list[np.ndarray]] = {"real": [], "generated": [], "decoded": []}
        self.feats: dict[str, list[np.ndarray]] = {"real": [], "generated": [], "decoded": []}
        self.has_decoded: bool | None = None

    def update(self, real: np.ndarray, generated: np.ndarray, decoded: np.ndarray | None = None) -> None:
        """Clips uint8 [B, 1 + 4n, H, W, 3]; ``decoded``: the real clips through the model's VAE (or None)."""
        if self.has_decoded is None:
            self.has_decoded = decoded is not None
        if (decoded is not None) != self.has_decoded:
            raise ValueError("pass decoded frames for every batch or for none")
        sets = {"real": real, "generated": generated}
        if decoded is not None:
            if decoded.shape != real.shape:
                raise ValueError(f"decoded frames {decoded.shape} do not match the real ones {real.shape}")
            sets["decoded"] = decoded
        for name, frames in sets.items():
            self.energy[name].append(gradient_energy(frames))
            if self.features is not None:
                self.feats[name].append(self.features.embed(frames[:, 1:]))  # [B, 4n, D]: frame 0 is given

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-clip arrays for ``metrics.npz``: energies [N, 1 + 4n] and features [N, 4n, D] (float16)."""
        out = {f"sharpness_energy_{k}": np.concatenate(v) for k, v in self.energy.items() if v}
        out.update({f"features_{k}": np.concatenate(v).astype(np.float16) for k, v in self.feats.items() if v})
        return out

    def summary(self, groups: list[str] | None = None) -> dict[str, Any]:
        """``groups``: a label per clip (its map); the real split alternates each group's clips between halves
        (default: even vs odd clips)."""
        if not self.energy["real"]:
            return {"skipped": "no clips scored"}
        e = {k: np.concatenate(v) for k, v in self.energy.items() if v}
        out: dict[str, Any] = {
            "sharpness": {
                "vs_real": sharpness_summary(e["generated"], e["real"]),
                "vs_vae": sharpness_summary(e["generated"], e["decoded"]) if "decoded" in e else None,
                "vae_vs_real": sharpness_summary(e["decoded"], e["real"]) if "decoded" in e else None,
            },
            "definitions": DEFINITIONS,
        }
        if not self.has_decoded:
            out["sharpness"]["vs_vae_skipped"] = "the model decodes no VAE latents (or --no-decoder-reference)"
        out["frechet"] = self._frechet(groups) if self.features is not None else {"skipped": "no feature network"}
        return out

    def _frechet(self, groups: list[str] | None) -> dict[str, Any]:
        f = {k: np.concatenate(v) for k, v in self.feats.items() if v}  # [N, 4n, D]
        real, gen = f["real"], f["generated"]
        n_clips, n_frames, dim = real.shape
        steps = n_frames // 4
        half = split_halves(n_clips if groups is None else list(groups))

        def window(x: np.ndarray, lo: int, hi: int) -> np.ndarray:  # frames lo..hi (1-based) of every clip
            return x[:, lo - 1 : hi].reshape(-1, dim)

        first = min(16, n_frames)
        out: dict[str, Any] = {
            "first16": _fd(window(real, 1, first), window(gen, 1, first)),
            "all_frames": _fd(window(real, 1, n_frames), window(gen, 1, n_frames)),
            "per_step": [None]
            + [
                _fd(window(real, 4 * j - 3, 4 * j), window(gen, 4 * j - 3, 4 * j)) for j in range(1, steps + 1)
            ],  # fmt: skip
            "real_split_first16": _fd(window(real[half == 0], 1, first), window(real[half == 1], 1, first)),
            "frames_first16": int(n_clips * first),
            "frames_per_step": int(n_clips * 4),
            "frames_split_first16": [int((half == 0).sum() * first), int((half == 1).sum() * first)],
            "feature_dim": int(dim),
            "feature_net": self.features.describe() if hasattr(self.features, "describe") else None,
        }
        if "decoded" in f:
            out["vs_vae_first16"] = _fd(window(f["decoded"], 1, first), window(gen, 1, first))
            out["vae_vs_real_first16"] = _fd(window(real, 1, first), window(f["decoded"], 1, first))
        return out


def split_halves(groups: int | list[str]) -> np.ndarray:
    """int [N] of 0 / 1: each group's clips alternate between the halves in order, the first clip of every other
    group going to the second half (so that groups of one clip are split too, and the halves differ in size by
    at most one per pair of groups). ``groups`` an int N: one group, i.e. even vs odd clips."""
    labels = ["" for _ in range(groups)] if isinstance(groups, int) else list(groups)
    order: dict[str, int] = {}
    seen: dict[str, int] = {}
    out = np.empty(len(labels), np.int64)
    for i, g in enumerate(labels):
        order.setdefault(g, len(order))
        out[i] = (seen.get(g, 0) + order[g]) % 2
        seen[g] = seen.get(g, 0) + 1
    return out


def headline(realism: dict[str, Any] | None) -> dict[str, Any]:
    """The numbers the report's headline quotes (None where not measured)."""
    realism = realism or {}
    sharp = realism.get("sharpness") or {}
    fd = realism.get("frechet") or {}

    def pick(d: dict[str, Any] | None, key: str) -> Any:
        return None if not d else d.get(key)

    return {
        "sharpness_vs_real_first16": pick(sharp.get("vs_real"), "first16"),
        "sharpness_vs_vae_first16": pick(sharp.get("vs_vae"), "first16"),
        "frechet_first16": fd.get("first16"),
        "frechet_real_split_first16": fd.get("real_split_first16"),
        "frechet_vs_vae_first16": fd.get("vs_vae_first16"),
    }
