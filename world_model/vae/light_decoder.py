"""A light streaming decoder (TAEHV style) for the Wan latents: per-frame 2D convs with one-frame memory.

Reads the same normalised latents [B, z, T, h, w] as ``WanVAE.decode`` and emits the same frame counts
(1 for latent frame 0, then 4 per latent frame), at a fraction of the cost. Layout, for widths (w0, w1, w2, w3):

    tanh clamp -> conv3x3 z->w0, ReLU
    per stage i (three): MemBlock(w_i) x n -> time upsample (1x1 conv w_i -> f*w_i, f in {1, 2}, one frame per
        channel group) -> nearest 2x -> conv3x3 w_i -> w_{i+1}
    ReLU -> conv3x3 w3 -> 3

A MemBlock sees its input frame concatenated with the previous frame of the same input (zeros at clip start),
so the stream state is one frame per MemBlock. The time upsample runs before the spatial one because a 1x1
conv commutes with nearest upsampling (4x fewer pixels, same result). At clip start the time upsample keeps only
the last of its f sub-frames for latent frame 0, so frame 0 maps to one output frame, as in the Wan decoder.

No pretrained weights exist: train with ``distillation/train_light_decoder.py`` from any ``WanVAE``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .feature_cache import Caches, FeatureCache
from .validation import check_latents


@dataclass(frozen=True)
class LightDecoderConfig:
    """``widths[i]`` is the width of stage i (the last entry is the final full-resolution conv's width)."""

    z_dim: int = 16
    widths: tuple[int, ...] = (256, 128, 64, 64)
    blocks_per_stage: int = 3
    time_upsample: tuple[bool, ...] = (False, True, True)
    latent_clamp: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "time_upsample", tuple(self.time_upsample))
        if len(self.widths) < 2:
            raise ValueError(f"widths needs at least 2 entries, got {self.widths}")
        if len(self.time_upsample) != len(self.widths) - 1:
            raise ValueError(
                f"time_upsample needs one flag per stage ({len(self.widths) - 1}), got {self.time_upsample}"
            )

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.time_upsample)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.widths) - 1)


class MemBlock(nn.Module):
    """relu(x + conv(relu(conv(relu(conv(cat[x, x_prev])))))) per frame; x [B, T, C, H, W]."""

    n_cache = 1

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels * 2, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        b, t, c, h, w = x.shape
        prev = torch.zeros_like(x[:, :1]) if cache is None else cache[0]
        past = torch.cat([prev, x[:, :-1]], dim=1)
        y = self.conv(torch.cat([x, past], dim=2).reshape(b * t, 2 * c, h, w)).reshape(b, t, c, h, w)
        return F.relu(x + y), ((x[:, -1:].clone(),) if keep else ())


class TimeUpsample(nn.Module):
    """[B, T, C, H, W] -> [B, f T, C, H, W]: a 1x1 conv to f*C channels, channel group s -> sub-frame s."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(channels, channels * factor, 1, bias=False)

    def forward(self, x: Tensor, clip_start: bool) -> Tensor:
        b, t, c, h, w = x.shape
        y = self.conv(x.reshape(b * t, c, h, w)).reshape(b, t * self.factor, c, h, w)
        # Latent frame 0 stands for one video frame: keep its last sub-frame only.
        return y[:, self.factor - 1 :] if clip_start else y


class Stage(nn.Module):
    def __init__(self, width: int, out_width: int, blocks: int, time_factor: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MemBlock(width) for _ in range(blocks)])
        self.time_up = TimeUpsample(width, time_factor)
        self.conv = nn.Conv2d(width, out_width, 3, padding=1, bias=False)
        self.n_cache = blocks

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        """x [B, T, C, H, W] -> [B, T', C', 2H, 2W]."""
        new: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, c = block.step(x, None if cache is None else cache[i : i + 1], keep)
            new.extend(c)
        x = self.time_up(x, clip_start=cache is None)
        b, t, c, h, w = x.shape
        x = F.interpolate(x.reshape(b * t, c, h, w), scale_factor=2.0, mode="nearest")
        x = self.conv(x)
        return x.reshape(b, t, *x.shape[1:]), tuple(new)


class LightDecoder(nn.Module):
    """Normalised latents [B, z, T, h, w] -> video [B, 3, 1 + 4(T-1), 8h, 8w], streaming with a 1-frame memory."""

    def __init__(self, config: LightDecoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LightDecoderConfig()
        w = config.widths
        self.conv_in = nn.Conv2d(config.z_dim, w[0], 3, padding=1)
        self.stages = nn.ModuleList(
            [
                Stage(w[i], w[i + 1], config.blocks_per_stage, 2 if config.time_upsample[i] else 1)
                for i in range(len(w) - 1)
            ]
        )
        self.conv_out = nn.Conv2d(w[-1], 3, 3, padding=1)

    def decode_tensors(
        self, latents: Tensor, cache: Caches | None, keep: bool = True, clamp: bool = True
    ) -> tuple[Tensor, Caches]:
        """Pure step: latents [B, z, T, h, w] -> video [B, 3, F, 8h, 8w] (F = 1 + 4(T-1) at clip start, else 4T)."""
        dtype = self.conv_in.weight.dtype
        lim = self.config.latent_clamp
        x = torch.tanh(latents.to(dtype) / lim) * lim
        b, z, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, z, h, w)
        x = F.relu(self.conv_in(x)).reshape(b, t, -1, h, w)
        new: list[Tensor] = []
        offset = 0
        for stage in self.stages:
            n = stage.n_cache
            x, c = stage.step(x, None if cache is None else cache[offset : offset + n], keep)
            new.extend(c)
            offset += n
        b, t, c, h, w = x.shape
        y = self.conv_out(F.relu(x).reshape(b * t, c, h, w)).reshape(b, t, 3, h, w).permute(0, 2, 1, 3, 4)
        return (y.clamp(-1.0, 1.0) if clamp else y), tuple(new)

    def forward(self, latents: Tensor) -> Tensor:
        """Whole clip, unclamped (for training losses): [B, z, T, h, w] -> [B, 3, 1 + 4(T-1), 8h, 8w]."""
        check_latents(latents, z_dim=self.config.z_dim)
        return self.decode_tensors(latents, None, keep=False, clamp=False)[0]

    def decode(self, latents: Tensor) -> Tensor:
        """Whole clip, clamped to [-1, 1] like ``WanVAE.decode``."""
        check_latents(latents, z_dim=self.config.z_dim)
        return self.decode_tensors(latents, None, keep=False)[0]

    def decode_chunk(self, latents: Tensor, state: FeatureCache | None = None) -> tuple[Tensor, FeatureCache]:
        state = state or FeatureCache()
        check_latents(latents, z_dim=self.config.z_dim)
        state.check_chunk(latents)
        video, tensors = self.decode_tensors(latents, state.tensors)
        return video, state.advanced(tensors, latents)


LIGHT_KIND = "light-decoder"
_WHAT = "light decoder"


def save_light_decoder(model: LightDecoder, path: str | os.PathLike, vae_fingerprint: str | None = None) -> None:
    """Write {config, state_dict} atomically as a state file (safetensors + JSON + SHA-256, see
    :mod:`world_model.safe_files`; the name may stay ``.pt``), with the fingerprint of the VAE latents it decodes
    when known (``distillation.vae_export.latent_fingerprint``)."""
    from world_model.safe_files import save_state_file

    blob = {"config": asdict(model.config), "state_dict": {k: v.detach() for k, v in model.state_dict().items()}}
    if vae_fingerprint is not None:
        blob["vae_fingerprint"] = vae_fingerprint
    save_state_file(path, blob, LIGHT_KIND)


def _read_light(path: str | os.PathLike, map_location=None) -> tuple[dict, dict, str | None]:
    """(config dict, state dict, fingerprint) from a light-decoder file or a light-decoder training checkpoint."""
    from world_model.safe_files import StateFileError, load_state_file, require_keys

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no light decoder at {path}")
    blob = load_state_file(path, (LIGHT_KIND, "training-checkpoint"), _WHAT, map_location)
    if "state_dict" in blob or "student" not in blob:
        require_keys(blob, ("config", "state_dict"), path, _WHAT)
        return blob["config"], blob["state_dict"], blob.get("vae_fingerprint")
    # A training checkpoint of distillation/train_light_decoder.py: the student and its config.
    cfg = blob.get("config", {}).get("student") if isinstance(blob.get("config"), dict) else None
    if not isinstance(cfg, dict):
        raise StateFileError(f"{path}: a training checkpoint, but not of a light decoder (no config['student'])")
    return cfg, blob["student"], None


def light_decoder_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint of the VAE latents the light decoder in ``path`` was trained on (None: not recorded)."""
    return _read_light(path)[2]


def load_light_decoder(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LightDecoder:
    """Load a file written by ``save_light_decoder`` (or a light-decoder training checkpoint: its student).

    Pickles (the ``torch.save`` files of before) are refused with the command that converts them; a corrupt file
    (SHA-256), a missing key or weights that do not fit the config raise an error naming the file."""
    from world_model.safe_files import StateFileError

    cfg, sd, _ = _read_light(path, map_location)
    try:
        model = LightDecoder(LightDecoderConfig(**cfg))
        model.load_state_dict(sd)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise StateFileError(f"{path}: the light decoder's weights do not fit its config ({exc})") from exc
    return model
