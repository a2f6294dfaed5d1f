"""Wan2.1 causal video VAE with explicit streaming state, the fast I2V condition, and a light decoder.

Shapes: videos are [B, 3, F, H, W] in [-1, 1] with F = 4n + 1; latents are normalised [B, 16, n + 1, H/8, W/8].
"""

from .checkpoint import ENCODER_PREFIXES, is_encoder_key, load_wan_vae, read_state_dict, vae_from_halves
from .diffusers_keys import is_diffusers_naming, to_diffusers_names, to_official_names
from .feature_cache import FeatureCache
from .i2v_condition import I2VConditionBuilder, i2v_condition_slow, i2v_mask
from .light_decoder import (
    LightDecoder,
    LightDecoderConfig,
    light_decoder_fingerprint,
    load_light_decoder,
    save_light_decoder,
)
from .light_widen import widen_light_decoder
from .streaming import StreamingDecoder, StreamingEncoder
from .wan_vae import WAN21_LATENT_MEAN, WAN21_LATENT_STD, VAEConfig, WanVAE, count_parameters, infer_config

__all__ = [
    "WAN21_LATENT_MEAN",
    "WAN21_LATENT_STD",
    "FeatureCache",
    "I2VConditionBuilder",
    "LightDecoder",
    "LightDecoderConfig",
    "StreamingDecoder",
    "StreamingEncoder",
    "VAEConfig",
    "WanVAE",
    "count_parameters",
    "i2v_condition_slow",
    "i2v_mask",
    "infer_config",
    "is_diffusers_naming",
    "load_light_decoder",
    "ENCODER_PREFIXES",
    "is_encoder_key",
    "vae_from_halves",
    "load_wan_vae",
    "widen_light_decoder",
    "read_state_dict",
    "save_light_decoder",
    "light_decoder_fingerprint",
    "to_diffusers_names",
    "to_official_names",
]


def get_config(name: str) -> VAEConfig:
    """A named VAE config: ``"wan2.1"`` (the released model). The Doom VAE's config is ``world_model.doom``'s
    (presets resolve ``"doom"`` there)."""
    if name == "wan2.1":
        return VAEConfig()
    raise KeyError(f"unknown VAE config {name!r}; known: 'wan2.1' (the Doom VAE: world_model.doom.vae_config())")
