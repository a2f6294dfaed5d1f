"""A whole downloaded release: the DiT(s), the Wan2.1 VAE and the text encoder of a preset, from its root folder.

Layout of a LingBot-World / Wan root (docs/official_models.md §1): the expert folders, ``Wan2.1_VAE.pth``,
``models_t5_umt5-xxl-enc-bf16.pth`` and ``google/umt5-xxl/`` (tokenizer). File names come from ``Preset.files``.
The VAE is built by ``world_model.vae`` (imported only here), its shape read from the tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from world_model.checkpoints.build import ExpertPair
from world_model.checkpoints.loading import CheckpointError, load_model
from world_model.checkpoints.presets import Preset, get_preset
from world_model.checkpoints.text_encoders import TextEncoder, UMT5TextEncoder
from world_model.dit import WanDiT


@dataclass
class Release:
    """The loaded parts of a preset; ``vae`` / ``text_encoder`` are None when not asked for."""

    preset: Preset
    dit: WanDiT | ExpertPair
    vae: Any | None = None  # world_model.vae.WanVAE
    text_encoder: TextEncoder | None = None


def _release_file(root: Path, preset: Preset, role: str) -> Path:
    if role not in preset.files:
        raise CheckpointError(f"preset {preset.name!r} names no {role} file (Preset.files has {sorted(preset.files)})")
    path = root / preset.files[role]
    if not path.exists():
        raise CheckpointError(f"{path}: missing; preset {preset.name!r} expects its {role} there")
    return path


def load_vae(
    root: str | Path, preset: str | Preset, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
):
    """The preset's Wan2.1 VAE from ``<root>/Wan2.1_VAE.pth`` (official or diffusers names)."""
    from world_model.vae import load_wan_vae

    p = get_preset(preset)
    return load_wan_vae(_release_file(Path(root), p, "vae"), device=device, dtype=dtype)


def load_text_encoder(
    root: str | Path,
    preset: str | Preset,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    **kwargs: Any,
) -> TextEncoder:
    """The preset's umT5-XXL from the Wan ``.pth`` + tokenizer folder under ``root`` (``kwargs``: ``config=``...).

    The project's small encoders are trained with their model and saved with its training checkpoint."""
    p = get_preset(preset)
    if p.text_encoder != "umt5-xxl":
        raise ValueError(f"preset {p.name!r} uses the {p.text_encoder!r} text encoder, which has no release file")
    root = Path(root)
    weights = _release_file(root, p, "text_encoder")
    tokenizer = _release_file(root, p, "tokenizer")
    return UMT5TextEncoder.from_wan(weights, tokenizer, device=device, dtype=dtype, **kwargs)


def load_release(
    root: str | Path,
    preset: str | Preset,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    vae: bool = True,
    text_encoder: bool = True,
    vae_dtype: torch.dtype = torch.float32,
    text_encoder_kwargs: dict[str, Any] | None = None,
) -> Release:
    """Everything a preset needs from its release root, each part on ``device``.

    Args:
        dtype: DiT dtype (default the preset's: bf16). The VAE defaults to fp32, the umT5 to bf16, as Wan runs them.
        vae, text_encoder: load those parts too.
    """
    p = get_preset(preset)
    root = Path(root)
    release = Release(p, load_model(root, p, device=device, dtype=dtype))
    if vae:
        release.vae = load_vae(root, p, device=device, dtype=vae_dtype)
    if text_encoder and p.text_encoder == "umt5-xxl":
        release.text_encoder = load_text_encoder(root, p, device=device, **(text_encoder_kwargs or {}))
    return release
