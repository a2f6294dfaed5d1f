"""Write the diffusers reference data that ``tests/test_vae_reference.py`` checks the Wan2.1 VAE against.

    pip install --target /tmp/diffusers-site diffusers==0.35.2   # not a project dependency
    PYTHONPATH=/tmp/diffusers-site python tools/make_wan_vae_reference.py

Writes (see ``tests/data/README.md``):

- ``tests/data/diffusers_wan_vae_keys.txt``: every ``AutoencoderKLWan().state_dict()`` name with its full-size shape.
- ``tests/data/wan_vae_tiny_golden.pt``: the test's deterministic width-8 weights (as a fingerprint; the test
  regenerates them), its inputs, and diffusers' encode / decode of them.

The expected outputs come from diffusers alone: this repo only supplies the weights (official names, renamed for
diffusers by ``to_diffusers_names``; ``strict=True`` loading checks that every name lands on a diffusers tensor).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import diffusers  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402
from test_vae_reference import (  # noqa: E402
    DIFFUSERS_KEYS,
    GOLDEN,
    reference_inputs,
    reference_weights,
    weight_fingerprint,
)

from world_model.vae import VAEConfig, WanVAE, to_diffusers_names  # noqa: E402


def write_keys() -> None:
    with torch.device("meta"):  # full size, no allocation
        full = AutoencoderKLWan()
    lines = [
        f"# AutoencoderKLWan() state dict, diffusers {diffusers.__version__}: name and full-size shape",
        *(f"{k} {','.join(str(s) for s in v.shape)}" for k, v in full.state_dict().items()),
    ]
    DIFFUSERS_KEYS.parent.mkdir(parents=True, exist_ok=True)
    DIFFUSERS_KEYS.write_text("\n".join(lines) + "\n")
    print(f"{DIFFUSERS_KEYS}: {len(lines) - 1} keys")


def write_golden() -> None:
    config = VAEConfig(dim=8, z_dim=16)
    weights = reference_weights(config)
    ref = AutoencoderKLWan(base_dim=config.dim, z_dim=config.z_dim).eval()
    ref.load_state_dict(to_diffusers_names(weights, config), strict=True)
    mean = torch.tensor(ref.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(ref.config.latents_std).view(1, -1, 1, 1, 1)
    video, latents = reference_inputs()
    with torch.no_grad():
        encoded = (ref.encode(video).latent_dist.mean - mean) / std
        decoded = ref.decode(latents * std + mean).sample

        ours = WanVAE(config).eval()
        ours.load_state_dict(weights)
        enc_diff = (ours.encode(video) - encoded).abs().max().item()
        dec_diff = (ours.decode(latents) - decoded).abs().max().item()
    golden = {
        "config": {"dim": config.dim, "z_dim": config.z_dim},
        "weight_fingerprint": weight_fingerprint(weights),
        # Per-tensor sums under the names diffusers holds them: checks this repo's renaming at width 8.
        "diffusers_weight_fingerprint": weight_fingerprint(ref.state_dict()),
        "video": video,
        "latents": latents,
        "encoded": encoded.contiguous(),
        "decoded": decoded.contiguous(),
        "latents_mean": [float(v) for v in ref.config.latents_mean],
        "latents_std": [float(v) for v in ref.config.latents_std],
        "source": f"diffusers {diffusers.__version__} AutoencoderKLWan, torch {torch.__version__}, fp32 CPU",
        "max_abs_diff_at_generation": {"encode": enc_diff, "decode": dec_diff},
    }
    torch.save(golden, GOLDEN)
    size = GOLDEN.stat().st_size
    print(f"{GOLDEN}: {size} bytes; this repo vs diffusers: encode {enc_diff:.2e}, decode {dec_diff:.2e}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_keys()
    write_golden()
