"""The Wan2.1 VAE maths against an outside reference: diffusers ``AutoencoderKLWan`` (0.35.2).

The chunked == whole-clip tests in ``test_vae.py`` compare this code with itself, so a mistake made by both paths
(interleave order in the temporal upsampler, q and v swapped in the attention, a missing sqrt(C) in the RMS norm)
passes them. These tests compare with outputs computed once by diffusers from the same deterministic width-8
weights and inputs (``tests/data/wan_vae_tiny_golden.pt``, written by ``tools/make_wan_vae_reference.py``), and
the key names with the real diffusers list (``tests/data/diffusers_wan_vae_keys.txt``). diffusers is not needed
here; the live comparison at the end runs only where it is installed.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch
from test_vae import max_diff, single_thread  # noqa: F401 (autouse fixture)

from world_model.vae import (
    WAN21_LATENT_MEAN,
    WAN21_LATENT_STD,
    StreamingDecoder,
    StreamingEncoder,
    VAEConfig,
    WanVAE,
    to_diffusers_names,
    to_official_names,
)
from world_model.vae.diffusers_keys import diffusers_key_to_official, official_key_to_diffusers

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "wan_vae_tiny_golden.pt"
DIFFUSERS_KEYS = DATA / "diffusers_wan_vae_keys.txt"

# diffusers and this code agree to ~6e-7 (encode) and ~5e-6 (decode) in fp32; each mutation above moves the
# outputs by > 1e-2.
ENCODE_TOL = 1e-4
DECODE_TOL = 1e-4

# ---------------------------------------------------------------------- deterministic weights and inputs
#
# Integer hashing only (no torch RNG, no libm), so the same numbers come out on every platform and torch version.

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (products stay below 2^59 in int64, so nothing overflows)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def hash_uniform(shape: tuple[int, ...], name: str) -> torch.Tensor:
    """Uniform values in [-1, 1) (float64), a fixed function of ``name`` and the element index."""
    n = math.prod(shape)
    x = _mix32(_mix32(torch.arange(n, dtype=torch.int64)) ^ zlib.crc32(name.encode()))
    return (x.double() / 2**31 - 1).view(shape)


def reference_weights(config: VAEConfig) -> dict[str, torch.Tensor]:
    """Official-named fp32 weights: U(-1, 1)/sqrt(fan_in) kernels, 0.1 U(-1, 1) biases, 1 + 0.25 U(-1, 1) gammas."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanVAE(config).state_dict().items()}
    out = {}
    for key, shape in shapes.items():
        u = hash_uniform(shape, key)
        if key.endswith(".gamma"):
            value = 1 + 0.25 * u
        elif key.endswith(".bias"):
            value = 0.1 * u
        else:
            value = u / math.sqrt(math.prod(shape[1:]))
        out[key] = value.float()
    return out


def reference_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A [1, 3, 9, 24, 32] video in [-1, 1) and normalised latents [1, 16, 3, 3, 4] (unit variance)."""
    video = hash_uniform((1, 3, 9, 24, 32), "video").float()
    latents = (hash_uniform((1, 16, 3, 3, 4), "latents") * math.sqrt(3)).float()
    return video, latents


def weight_fingerprint(state_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.double().sum()) for k, v in state_dict.items()}


# ------------------------------------------------------------------------------------------------ golden


@pytest.fixture(scope="module")
def golden() -> dict:
    from world_model.safe_files import safe_torch_load

    return safe_torch_load(GOLDEN, "golden reference file")  # tensors only, nothing in it runs


@pytest.fixture(scope="module")
def reference_vae(golden) -> WanVAE:
    config = VAEConfig(dim=golden["config"]["dim"], z_dim=golden["config"]["z_dim"])
    weights = reference_weights(config)
    stored = golden["weight_fingerprint"]
    assert set(stored) == set(weights)
    drift = {k: (stored[k], v) for k, v in weight_fingerprint(weights).items() if abs(stored[k] - v) > 1e-6}
    assert not drift, f"the weight generator changed (regenerate the golden file): {list(drift.items())[:3]}"
    vae = WanVAE(config).eval()
    vae.load_state_dict(weights)
    return vae


def test_golden_file_is_small_and_complete(golden):
    assert GOLDEN.stat().st_size < 300_000
    video, latents = reference_inputs()
    assert torch.equal(golden["video"], video) and torch.equal(golden["latents"], latents)
    assert golden["encoded"].shape == (1, 16, 3, 3, 4)
    assert golden["decoded"].shape == (1, 3, 9, 24, 32)
    # Not saturated: the clamp to [-1, 1] would hide differences in clamped pixels.
    assert (golden["decoded"].abs() < 1).float().mean() > 0.85
    # The normalisation constants came from diffusers' config, not from this repo.
    assert golden["latents_mean"] == list(WAN21_LATENT_MEAN)
    assert golden["latents_std"] == list(WAN21_LATENT_STD)


def test_encode_matches_diffusers(golden, reference_vae):
    video, expected = golden["video"], golden["encoded"]
    with torch.no_grad():
        assert max_diff(reference_vae.encode(video), expected) < ENCODE_TOL  # official chunk schedule
        assert max_diff(reference_vae.encode(video, chunked=False), expected) < ENCODE_TOL
        stream = StreamingEncoder(reference_vae)
        parts = [stream(video[:, :, :1]), stream(video[:, :, 1:9])]
        assert max_diff(torch.cat(parts, dim=2), expected) < ENCODE_TOL


def test_decode_matches_diffusers(golden, reference_vae):
    latents, expected = golden["latents"], golden["decoded"]
    with torch.no_grad():
        assert max_diff(reference_vae.decode(latents), expected) < DECODE_TOL  # one latent frame per chunk
        assert max_diff(reference_vae.decode(latents, chunked=False), expected) < DECODE_TOL
        stream = StreamingDecoder(reference_vae)
        parts = [stream(latents[:, :, :1]), stream(latents[:, :, 1:3])]
        assert max_diff(torch.cat(parts, dim=2), expected) < DECODE_TOL


# ----------------------------------------------------------------------------------------- diffusers names


def read_diffusers_keys() -> dict[str, tuple[int, ...]]:
    """The 194 ``AutoencoderKLWan().state_dict()`` names with their full-size shapes."""
    out = {}
    for line in DIFFUSERS_KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            out[name] = tuple(int(s) for s in shape.split(","))
    return out


def test_name_mapping_produces_the_real_diffusers_keys_and_inverts():
    real = read_diffusers_keys()
    assert len(real) == 194
    for width in (96, 8):
        with torch.device("meta"):
            vae = WanVAE(VAEConfig(dim=width))
        sd = vae.state_dict()
        dsd = to_diffusers_names(sd, vae.config)
        assert len(dsd) == len(sd) == 194  # the mapping is one-to-one
        assert set(dsd) == set(real), (sorted(set(dsd) - set(real))[:5], sorted(set(real) - set(dsd))[:5])
        if width == 96:
            assert {k: tuple(v.shape) for k, v in dsd.items()} == real
        # Back to the official names, tensor for tensor.
        back = to_official_names(dsd, vae.config)
        assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd)
    for name in real:
        assert official_key_to_diffusers(diffusers_key_to_official(name)) == name


def test_renamed_weights_land_where_diffusers_held_them(golden):
    """Same-shape tensors swapped by the renaming (e.g. the two mid-block resnets) keep the key set; this does not."""
    config = VAEConfig(dim=8)
    renamed = weight_fingerprint(to_diffusers_names(reference_weights(config), config))
    held = golden["diffusers_weight_fingerprint"]
    assert set(renamed) == set(held)
    wrong = [k for k in held if abs(held[k] - renamed[k]) > 1e-6]
    assert not wrong, wrong[:5]


# ------------------------------------------------------------------------------- live (diffusers installed)


@pytest.mark.slow  # importing diffusers takes seconds
def test_live_parity_with_diffusers():
    diffusers = pytest.importorskip("diffusers")
    config = VAEConfig(dim=8)
    weights = reference_weights(config)
    ref = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16).eval()
    ref.load_state_dict(to_diffusers_names(weights, config), strict=True)
    assert tuple(ref.config.latents_mean) == WAN21_LATENT_MEAN and tuple(ref.config.latents_std) == WAN21_LATENT_STD
    vae = WanVAE(config).eval()
    vae.load_state_dict(weights)
    mean, std = vae.latent_mean.view(1, -1, 1, 1, 1), vae.latent_std.view(1, -1, 1, 1, 1)
    video = hash_uniform((2, 3, 5, 16, 24), "live video").float()
    latents = hash_uniform((2, 16, 2, 2, 3), "live latents").float() * math.sqrt(3)
    with torch.no_grad():
        mu = ref.encode(video).latent_dist.mean
        assert max_diff(vae.encode(video), (mu - mean) / std) < ENCODE_TOL
        assert max_diff(vae.decode(latents), ref.decode(latents * std + mean).sample) < DECODE_TOL
