"""Small builders shared by the tests: tiny random models that run in milliseconds on a CPU."""

from __future__ import annotations

import torch

from world_model.config import WanDiTConfig
from world_model.dit import WanDiT


def tiny_config(control_dim: int | None = None, **overrides) -> WanDiTConfig:
    kw = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=36, out_dim=16, text_dim=32, text_len=8)
    kw.update(overrides)
    return WanDiTConfig(control_dim=control_dim, **kw)


def randomize_(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values: Wan's init zeroes the head and the camera scale/shift, which would let
    comparisons between attention modes pass trivially."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny_dit(control_dim: int | None = None, seed: int = 0, **overrides) -> WanDiT:
    torch.manual_seed(seed)
    return randomize_(WanDiT(tiny_config(control_dim, **overrides)).eval(), seed=seed)


def clip_inputs(model: WanDiT, batch: int = 2, frames: int = 6, hw: tuple[int, int] = (4, 6), seed: int = 0):
    """Random (x, y, context, control) for a clip of ``frames`` latent frames."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.out_dim, frames, *hw, generator=g)
    y = torch.randn(batch, cfg.cond_dim, frames, *hw, generator=g) if cfg.cond_dim else None
    ctx = torch.randn(batch, 5, cfg.text_dim, generator=g)
    ctrl = None
    if cfg.control_dim:
        ctrl = torch.randn(batch, cfg.control_dim * cfg.control_patch**2, frames, *hw, generator=g)
    return x, y, ctx, ctrl


def tiny_world(batch_size: int = 1, height: int = 32, width: int = 48, block_frames: int = 1, seed: int = 0):
    """A complete InteractiveWorld of tiny random parts (DiT, VAE, light decoder, text encoder)."""
    from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
    from world_model.control import ActionControlConfig
    from world_model.kv_cache import CacheConfig
    from world_model.sampling import FewStepSchedule
    from world_model.streaming import StreamConfig
    from world_model.vae import LightDecoder, LightDecoderConfig, VAEConfig, WanVAE
    from world_model.world import InteractiveWorld, WorldSpec

    torch.manual_seed(seed)
    text = SmallTextEncoder(
        SmallTextEncoderConfig(out_dim=32, dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_length=16)
    ).eval()
    dit = tiny_dit(7, seed=seed, text_dim=32, text_len=16)
    vae = randomize_(WanVAE(VAEConfig(dim=8)).eval(), std=0.1, seed=seed)
    light = randomize_(
        LightDecoder(LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=1)).eval(), std=0.1, seed=seed
    )
    spec = WorldSpec(
        height,
        width,
        fps=17.5,
        control=ActionControlConfig("act", height, width),
        stream=StreamConfig(block_frames, 1, FewStepSchedule.self_forcing(), CacheConfig("rolling", 3, 1)),
    )
    return InteractiveWorld(dit, vae, light, text, spec, batch_size=batch_size, seed=seed)


def tiny_vae_export(folder):
    """A tiny random VAE (dim 8) exported as ``distillation.train_vae`` does, with unit latent statistics."""
    from distillation.train_vae import export_vae
    from world_model.vae import VAEConfig, WanVAE

    torch.manual_seed(0)
    return export_vae(WanVAE(VAEConfig(dim=8)), (tuple([0.0] * 16), tuple([1.0] * 16)), folder)
