"""A complete world of tiny random parts, for checks, examples and tests: runs in milliseconds on a CPU.

Every parameter is random: Wan's init zeroes the output head (and the camera scale/shift), which would make the
frames constant and comparisons between code paths pass trivially.
"""

from __future__ import annotations

import numpy as np
import torch

from world_model.world import InteractiveWorld


def randomize_(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every parameter of ``model`` values ~ N(0, std^2) from a generator seeded with ``seed``, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny_world(
    batch_size: int = 1,
    height: int = 32,
    width: int = 48,
    block_frames: int = 1,
    seed: int = 0,
    start_image: bool = False,
    default_prompt: str = "",
) -> InteractiveWorld:
    """An :class:`InteractiveWorld` of a 2-layer act-control DiT (width 64), a width-8 VAE, a light decoder and a
    small text encoder, all random. ``start_image``: ship a gradient start frame like a model bundle does."""
    from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
    from world_model.config import WanDiTConfig
    from world_model.control import ActionControlConfig
    from world_model.dit import WanDiT
    from world_model.kv_cache import CacheConfig
    from world_model.sampling import FewStepSchedule
    from world_model.streaming import StreamConfig
    from world_model.vae import LightDecoder, LightDecoderConfig, VAEConfig, WanVAE
    from world_model.world import WorldSpec

    torch.manual_seed(seed)
    text = SmallTextEncoder(
        SmallTextEncoderConfig(out_dim=32, dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_length=16)
    ).eval()
    dit_cfg = WanDiTConfig(
        dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=36, out_dim=16, text_dim=32, text_len=16, control_dim=7
    )
    dit = randomize_(WanDiT(dit_cfg), seed=seed).eval()
    vae = randomize_(WanVAE(VAEConfig(dim=8)), std=0.1, seed=seed).eval()
    light = randomize_(LightDecoder(LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=1)), 0.1, seed).eval()
    spec = WorldSpec(
        height,
        width,
        fps=17.5,
        control=ActionControlConfig("act", height, width),
        stream=StreamConfig(block_frames, 1, FewStepSchedule.self_forcing(), CacheConfig("rolling", 3, 1)),
        default_prompt=default_prompt,
    )
    world = InteractiveWorld(dit, vae, light, text, spec, batch_size=batch_size, seed=seed)
    if start_image:
        y, x = np.mgrid[0:height, 0:width]
        world.start_image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 96)], -1).astype(np.uint8)
    return world
