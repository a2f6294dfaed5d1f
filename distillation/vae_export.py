"""The VAE export folder: how a trained VAE is written, read, and identified by the latents it makes.

A folder written by :func:`export_vae` holds ``vae_encoder.safetensors`` (encoder + ``conv1``),
``vae_decoder.safetensors`` (``conv2`` + decoder), both with official key names, and ``vae.json`` (the config with
the measured per-channel latent statistics). Everything downstream of the VAE (teacher, light decoder, DMD student,
the harness) loads it from here and records its :func:`latent_fingerprint`, so pairing a model with another VAE's
latents is caught.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from world_model.vae import VAEConfig, WanVAE, is_encoder_key, vae_from_halves

# The export's two halves, official key names in each. They travel separately: the trainers downstream of the VAE
# (teacher, DMD) need only the encoder on the GPU box, where the tree sent is size-limited, and the shipped world
# holds only the encoder (its light decoder decodes).
ENCODER_FILE, DECODER_FILE = "vae_encoder.safetensors", "vae_decoder.safetensors"


def export_vae(vae: WanVAE, stats, out: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the VAE for use and for carrying between machines: ``vae_encoder.safetensors`` (encoder + ``conv1``)
    and ``vae_decoder.safetensors`` (``conv2`` + decoder), bf16, each under 16 MiB for the Doom VAE, and
    ``vae.json`` (config with the measured latent statistics)."""
    from safetensors.torch import save_file

    from distillation.training.checkpoint import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in vae.state_dict().items()}
    for name, keep in ((ENCODER_FILE, True), (DECODER_FILE, False)):
        half = {k: v for k, v in state.items() if is_encoder_key(k) == keep}
        atomic_write(out / name, lambda tmp, half=half: save_file(half, str(tmp)))
    cfg = dataclasses.replace(vae.config, latent_mean=stats[0], latent_std=stats[1])
    (out / "vae.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return out


def latent_fingerprint(folder: str | Path) -> str:
    """What a model trained on this VAE's latents depends on, as 16 hex digits: the encoder half's tensors and the
    latent statistics of ``vae.json``. A decoder-only fine-tune keeps it; any change to the encoder changes it.
    A teacher records it at export, so that pairing it with another VAE's latents is caught."""
    import hashlib

    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "vae.json").read_text())
    digest = hashlib.sha256(json.dumps([cfg.get("latent_mean"), cfg.get("latent_std")]).encode())
    for name, tensor in sorted(load_file(folder / ENCODER_FILE).items()):
        digest.update(name.encode())
        digest.update(tensor.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def same_latents(recorded: str | None, folder: str | Path) -> bool:
    """Whether a model that recorded the :func:`latent_fingerprint` ``recorded`` at training decodes or predicts
    the latents of the VAE export in ``folder``; True when it recorded none (files from before the record)."""
    return recorded is None or recorded == latent_fingerprint(folder)


def read_safetensors_folder(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """All tensors of ``<prefix>.safetensors`` or of the shards listed in ``<prefix>.safetensors.index.json``."""
    from safetensors.torch import load_file

    index = folder / f"{prefix}.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else [f"{prefix}.safetensors"]
    )
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (folder / name).exists():
            listed = index.name if index.exists() else prefix
            raise FileNotFoundError(f"{folder / name} is missing (listed by {listed})")
        state.update(load_file(folder / name))
    return state


def for_cuda_convs(vae: WanVAE, channels_last: bool = True) -> WanVAE:
    """On CUDA: cuDNN autotuning (clip shapes are fixed, so it pays after the first call) and, with
    ``channels_last``, NDHWC weights (the batches arrive NDHWC, and so are cuDNN's fast conv3d kernels)."""
    if vae.conv1.weight.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if channels_last:
            vae.to_channels_last()
    return vae


def load_exported_vae(folder: str | Path, device="cpu", dtype=torch.float32, decoder: bool = True) -> WanVAE:
    """The VAE of an :func:`export_vae` folder; ``decoder=False`` loads the encoder half only (no ``.decoder``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "vae.json").read_text())
    config = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    files = (ENCODER_FILE, DECODER_FILE) if decoder else (ENCODER_FILE,)
    for name in files:
        if not (folder / name).is_file():
            hint = "" if name == ENCODER_FILE else " (pass decoder=False to load the encoder alone)"
            raise FileNotFoundError(f"{folder / name} is missing: not a complete VAE export{hint}")
    state = {k: v.float() for name in files for k, v in load_file(folder / name).items()}
    vae = vae_from_halves(config, state, decoder, str(folder))
    return for_cuda_convs(vae.to(device, dtype).eval())
