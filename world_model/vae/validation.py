"""Input checks with messages that name the problem and the fix.

Shape and dtype checks are free; the value-range check reads the min and max once (a device sync), which is
negligible next to a VAE encode and catches the most common mistake: passing uint8 or [0, 255] pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

# bf16 rounds 1.0 to within 2^-8; anything further out is not a rounding artefact.
RANGE_TOLERANCE = 1e-2


def _require_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_pixels(x: Tensor, name: str) -> None:
    """Floating dtype and values in [-1, 1]."""
    if not torch.is_floating_point(x):
        raise ValueError(
            f"{name} has dtype {x.dtype}; the VAE expects floating-point pixels in [-1, 1]. "
            f"Convert with `{name}.float() / 127.5 - 1` (for uint8 in [0, 255])."
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    lo, hi = torch.aminmax(x.detach())
    lo_v, hi_v = float(lo), float(hi)
    if lo_v < -1 - RANGE_TOLERANCE or hi_v > 1 + RANGE_TOLERANCE:
        hint = (
            f"pixels look like [0, 255]: use `{name} / 127.5 - 1`"
            if hi_v > 2 and lo_v >= 0
            else f"clamp or rescale {name} to [-1, 1]"
        )
        raise ValueError(f"{name} values span [{lo_v:.4g}, {hi_v:.4g}], outside [-1, 1]; {hint}.")


def check_spatial(height: int, width: int, factor: int, name: str) -> None:
    if height % factor or width % factor:
        fix_h, fix_w = max(factor, height // factor * factor), max(factor, width // factor * factor)
        raise ValueError(
            f"{name} is {height}x{width}, but height and width must be multiples of {factor} (the VAE downsamples "
            f"{factor}x; use multiples of {2 * factor} if the latents feed the DiT, which patchifies 2x2). "
            f"Resize or crop to e.g. {fix_h}x{fix_w}."
        )


def check_frame_count(frames: int, t_factor: int, name: str) -> None:
    if frames < 1 or (frames - 1) % t_factor:
        lo = (frames - 1) // t_factor * t_factor + 1 if frames > 1 else 1
        hi = lo + t_factor
        raise ValueError(
            f"{name} has {frames} frames; the causal VAE needs {t_factor}n+1 frames (1, {1 + t_factor}, "
            f"{1 + 2 * t_factor}, ...) because frame 0 is encoded alone and then {t_factor} frames per latent frame. "
            f"Trim to {lo} frames or pad to {hi} (e.g. by repeating the last frame)."
        )


def check_video(x: object, *, t_factor: int, s_factor: int, name: str = "video", check_range: bool = True) -> Tensor:
    """A pixel video [B, 3, F, H, W] in [-1, 1] with F = t_factor * n + 1 and H, W multiples of s_factor."""
    x = _require_tensor(x, name)
    if x.ndim != 5:
        raise ValueError(
            f"{name} must be [B, 3, F, H, W], got shape {tuple(x.shape)}"
            + ("; add the batch dimension with .unsqueeze(0)" if x.ndim == 4 else "")
        )
    if x.shape[1] != 3:
        raise ValueError(
            f"{name} must have 3 (RGB) channels at dim 1 ([B, 3, F, H, W]), got shape {tuple(x.shape)}; "
            f"a [B, F, 3, H, W] video needs .transpose(1, 2), a [B, F, H, W, 3] one .permute(0, 4, 1, 2, 3)."
        )
    check_frame_count(x.shape[2], t_factor, name)
    check_spatial(x.shape[3], x.shape[4], s_factor, name)
    if check_range or not torch.is_floating_point(x):
        check_pixels(x, name)
    return x


def check_video_chunk(x: object, *, first: bool, t_factor: int, s_factor: int, name: str = "video chunk") -> Tensor:
    """A streaming encoder chunk: the first holds 1 + t_factor * n frames, later ones t_factor * n frames."""
    x = _require_tensor(x, name)
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"{name} must be [B, 3, F, H, W], got shape {tuple(x.shape)}")
    frames = x.shape[2]
    if first:
        check_frame_count(frames, t_factor, f"the first {name}")
    elif frames < 1 or frames % t_factor:
        raise ValueError(
            f"{name} has {frames} frames; after the first chunk every chunk must hold a multiple of {t_factor} "
            f"frames (one latent frame per {t_factor} frames)."
        )
    check_spatial(x.shape[3], x.shape[4], s_factor, name)
    check_pixels(x, name)
    return x


def check_latents(z: object, *, z_dim: int, name: str = "latents") -> Tensor:
    """Normalised latents [B, z_dim, T, h, w]."""
    z = _require_tensor(z, name)
    if z.ndim != 5:
        raise ValueError(
            f"{name} must be [B, {z_dim}, T, h, w], got shape {tuple(z.shape)}"
            + ("; add the batch dimension with .unsqueeze(0)" if z.ndim == 4 else "")
        )
    if z.shape[1] != z_dim:
        raise ValueError(
            f"{name} must have {z_dim} channels at dim 1 ([B, {z_dim}, T, h, w]), got shape {tuple(z.shape)}"
        )
    if z.shape[2] < 1:
        raise ValueError(f"{name} has no latent frames (shape {tuple(z.shape)})")
    if not torch.is_floating_point(z):
        raise ValueError(f"{name} must be floating point, got {z.dtype}")
    return z


def check_image(x: object, *, s_factor: int, name: str = "image") -> Tensor:
    """One conditioning image per batch element [B, 3, H, W] in [-1, 1]."""
    x = _require_tensor(x, name)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must be [B, 3, H, W], got shape {tuple(x.shape)}"
            + ("; a [B, H, W, 3] image needs .permute(0, 3, 1, 2)" if x.ndim == 4 and x.shape[-1] == 3 else "")
        )
    check_spatial(x.shape[2], x.shape[3], s_factor, name)
    check_pixels(x, name)
    return x
