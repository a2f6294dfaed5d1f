"""Image metrics on videos ``[B, 3, F, H, W]`` in [-1, 1]: PSNR and SSIM per frame (no learned networks, since
no pretrained perceptual model can be downloaded here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_PSNR = 100.0  # identical frames: reported as this cap instead of +inf


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per (batch, frame) ``[B, F]``, pixel range [-1, 1] mapped to [0, 1]; capped at ``MAX_PSNR``."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean(dim=(1, 3, 4))
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp(max=MAX_PSNR)


def _gaussian(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11) -> torch.Tensor:
    """SSIM (Gaussian window 11, sigma 1.5) per (batch, frame) ``[B, F]`` on [0, 1] pixels, channel-averaged."""
    bsz, c, f, h, w = a.shape
    x = ((a.float() + 1) / 2).transpose(1, 2).reshape(bsz * f * c, 1, h, w)
    y = ((b.float() + 1) / 2).transpose(1, 2).reshape(bsz * f * c, 1, h, w)
    size = min(size, h, w)
    g = _gaussian(size, device=a.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).view(bsz, f, c).mean(-1)
