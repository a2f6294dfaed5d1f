"""Read a VAE state dict from disk and build a ``WanVAE`` on ``meta`` without allocating twice."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from .wan_vae import VAEConfig, WanVAE, infer_config


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """``.safetensors`` or a ``torch.save`` file (plain dict, or nested under ``state_dict``/``model``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in the legacy (pre-zip) format cannot be memory-mapped
        blob = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
    if not isinstance(blob, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(blob).__name__})")
    return blob


def load_wan_vae(
    source: str | os.PathLike | dict[str, Tensor],
    config: VAEConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> WanVAE:
    """Build on ``meta`` (no allocation), then adopt the loaded tensors. Official or diffusers names.

    The width and z are read from the tensors when ``config`` is None.
    """
    sd = read_state_dict(source) if not isinstance(source, dict) else source
    config = config or infer_config(sd)
    with torch.device("meta"):
        model = WanVAE(config)
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()
