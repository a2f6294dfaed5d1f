"""Small builders shared by the tests: tiny random models that run in milliseconds on a CPU."""

from __future__ import annotations

import torch

from world_model.config import WanDiTConfig
from world_model.dit import WanDiT
from world_model.tiny import randomize_, tiny_world  # noqa: F401  (re-exported for the tests)


def tiny_config(control_dim: int | None = None, **overrides) -> WanDiTConfig:
    kw = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=36, out_dim=16, text_dim=32, text_len=8)
    kw.update(overrides)
    return WanDiTConfig(control_dim=control_dim, **kw)


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


def tiny_vae_export(folder):
    """A tiny random VAE (dim 8) exported as ``distillation.train_vae`` does, with unit latent statistics."""
    from distillation.vae_export import export_vae
    from world_model.vae import VAEConfig, WanVAE

    torch.manual_seed(0)
    return export_vae(WanVAE(VAEConfig(dim=8)), (tuple([0.0] * 16), tuple([1.0] * 16)), folder)
