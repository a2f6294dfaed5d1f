"""Read a VAE state dict from disk and build a ``WanVAE`` on ``meta`` without allocating twice."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from .wan_vae import VAEConfig, WanVAE, infer_config


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """``.safetensors`` or a ``torch.save`` file (plain dict, or nested under ``state_dict``/``model``), the latter
    read with ``torch.load(weights_only=True)`` after refusing any pickle global outside torch's tensor allow-list."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from world_model.safe_files import safe_torch_load

    # weights_only=True after a scan of the pickle's globals: a file that would run code is refused, named.
    blob = safe_torch_load(path, "VAE weights file", mmap=True)
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


# The VAE's two halves by official key prefix. The encoder half (+ ``conv1``, the posterior head) is all a world
# needs when a light decoder decodes; shipped bundles and GPU-box transfers hold only that half.
ENCODER_PREFIXES = ("encoder.", "conv1.")


def is_encoder_key(name: str) -> bool:
    return name.startswith(ENCODER_PREFIXES)


def vae_from_halves(config: VAEConfig, state: dict[str, Tensor], decoder: bool = True, source: str = "") -> WanVAE:
    """A ``WanVAE`` from official-named ``state``; with ``decoder=False`` only the encoder half is expected and the
    decoder half (``decoder``, ``conv2``) is removed from the module. Missing or unexpected tensors raise."""
    vae = WanVAE(config)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    missing = [k for k in missing if decoder or is_encoder_key(k)]
    if missing or unexpected:
        raise ValueError(f"{source}: VAE tensors missing {missing[:5]}, unexpected {unexpected[:5]}")
    if not decoder:
        del vae.decoder, vae.conv2
    return vae
