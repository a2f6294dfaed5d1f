"""The Wan2.1 causal video VAE (docs/official_models.md §9, §10, §11), with explicit streaming state.

Layout and parameter names follow the official ``Wan2.1_VAE.pth`` (194 tensors at full size). Every temporal
layer is a causal conv padded only in front in time, so a clip can be processed in one pass or chunk by chunk
(frame 0 alone, then 4 frames per latent frame) with the same result; see ``feature_cache.py`` for the state.

Each temporal building block implements ``step(x, cache, keep) -> (y, new_cache)``:

- ``cache is None`` means ``x`` starts a clip: zero padding in front, and frame 0 skips the temporal
  up/down-sampling (so video frame 0 <-> latent frame 0). This is also the whole-clip path.
- otherwise ``cache`` is the block's slice of the stream state and ``x`` continues the clip.
- ``keep`` asks for the updated cache; whole-clip passes skip building it.

and exposes ``n_cache`` (tensors it keeps), ``reach`` (earlier input frames that affect one output frame) and
``time_stride`` (2 for the stride-2 temporal downsample), which the I2V shortcut uses to bound the image's
influence in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .feature_cache import Caches, FeatureCache, causal_pad, last_frames, zero_frames
from .validation import check_latents, check_video, check_video_chunk

WAN21_LATENT_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

# Frames a k_t = 3 causal conv looks back (docs/official_models.md §11: each caches its last 2 input frames).
CACHE_FRAMES = 2


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a Wan2.1-style VAE. Defaults are the released model; small models shrink ``dim``/``z_dim``.

    ``latent_mean``/``latent_std`` normalise latents as ``(mu - mean) / std``; left empty they default to the
    Wan2.1 constants when ``z_dim == 16`` and to 0 / 1 otherwise.
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = field(default=())
    latent_std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(
                f"temporal_downsample needs one flag per downsampling stage ({len(self.dim_mult) - 1}), "
                f"got {self.temporal_downsample}"
            )
        if self.dim % 2 or self.dim < 2:
            raise ValueError(f"dim must be a positive even number (upsamplers halve it), got {self.dim}")
        if not self.latent_mean:
            default = WAN21_LATENT_MEAN if self.z_dim == 16 else (0.0,) * self.z_dim
            object.__setattr__(self, "latent_mean", tuple(default))
        if not self.latent_std:
            default = WAN21_LATENT_STD if self.z_dim == 16 else (1.0,) * self.z_dim
            object.__setattr__(self, "latent_std", tuple(default))
        if len(self.latent_mean) != self.z_dim or len(self.latent_std) != self.z_dim:
            raise ValueError(f"latent_mean and latent_std need z_dim={self.z_dim} entries each")

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    def num_latent_frames(self, frames: int) -> int:
        """F = 4n + 1 video frames -> n + 1 latent frames."""
        return 1 + (frames - 1) // self.temporal_factor

    def num_video_frames(self, latent_frames: int) -> int:
        """T latent frames -> 1 + 4 (T - 1) video frames."""
        return 1 + (latent_frames - 1) * self.temporal_factor


# ----------------------------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    """``F.normalize(x, dim=1) * sqrt(C) * gamma``; gamma is [C, 1, 1, 1] for videos, [C, 1, 1] for images."""

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class CausalConv3d(nn.Conv3d):
    """Conv3d padded only in front in time (2 * padding_t frames), symmetric zero padding in space."""

    reach: int
    time_stride: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        # Spatial padding stays inside the conv (no extra F.pad copy); time padding is ours to control.
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad[1], pad[2]))
        self.time_pad = 2 * pad[0]
        self.n_cache = 1 if self.time_pad else 0
        self.reach = self.time_pad
        self.time_stride = self.stride[0]

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        """x [B, C_in, T, H, W] -> [B, C_out, T, H, W]; cache holds the previous ``time_pad`` input frames."""
        if not self.time_pad:
            return super().forward(x), ()
        padded = causal_pad(x, cache[0] if cache else None, self.time_pad)
        y = super().forward(padded)
        return y, ((last_frames(padded, self.time_pad),) if keep else ())

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None, False)[0]


def _per_frame(fn: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2D module to every frame of x [B, C, T, H, W]; channels_last_3d input becomes a free view."""
    b, c, t, h, w = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class ResidualBlock(nn.Module):
    """RMSNorm, SiLU, causal conv 3x3x3, RMSNorm, SiLU, (dropout 0), causal conv 3x3x3, plus a 1x1x1 shortcut."""

    n_cache = 2
    reach = 2 * CACHE_FRAMES
    time_stride = 1

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        # Indices 1, 4, 5 carry no parameters but keep the official key numbering (residual.0/2/3/6).
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut: nn.Module = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        """x [B, C_in, T, H, W] -> [B, C_out, T, H, W]."""
        r = self.residual
        h = self.shortcut(x)
        y, c1 = r[2].step(F.silu(r[0](x)), cache[0:1] if cache else None, keep)
        y, c2 = r[6].step(F.silu(r[3](y)), cache[1:2] if cache else None, keep)
        return y + h, c1 + c2

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None, False)[0]


class AttentionBlock(nn.Module):
    """Single-head self-attention within each frame (over H*W positions), residual."""

    n_cache = 0
    reach = 0
    time_stride = 1

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T, H, W] -> same shape."""
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(frames)).reshape(b * t, 3 * c, h * w)
        q, k, v = (part.transpose(1, 2).unsqueeze(1) for part in qkv.chunk(3, dim=1))  # [BT, 1, HW, C]
        out = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        out = self.proj(out)
        return x + out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        return self.forward(x), ()


class Upsample2x(nn.Module):
    """Nearest 2x spatial upsampling (for an exact factor 2, nearest-exact and nearest pick the same pixels)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest-exact")


class Resample(nn.Module):
    """Spatial 2x up/down (per frame), plus 2x in time for the 3d modes.

    - ``downsample2d``/``3d``: zero pad right/bottom by 1, Conv2d 3x3 stride 2; ``3d`` then a time conv
      (C, C, 3, 1, 1) with stride 2 and no padding: output frame j >= 1 sees input frames 2j-2..2j, output frame
      0 is input frame 0 (the first chunk skips it). Cache: the last input frame.
    - ``upsample2d``/``3d``: ``3d`` first runs a causal time conv C -> 2C whose two halves become two frames
      (frame 0 skips it: 1 frame in, 1 out); then nearest 2x and Conv2d 3x3 to C/2.
    """

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in ("upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        if mode.startswith("up"):
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        self.time_conv: CausalConv3d | None = None
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
        self.n_cache = 1 if self.time_conv is not None else 0
        self.reach = CACHE_FRAMES if self.time_conv is not None else 0
        self.time_stride = 2 if mode == "downsample3d" else 1

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        """x [B, C, T, H, W] -> up: [B, C/2, T', 2H, 2W]; down: [B, C, T', H/2, W/2] (T' per the mode)."""
        new: Caches = ()
        if self.mode == "upsample3d":
            x, new = self._time_up(x, cache, keep)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x, new = self._time_down(x, cache, keep)
        return x, new

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None, False)[0]

    def _time_up(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        assert self.time_conv is not None
        if cache is None:
            # Frame 0 bypasses the time conv, and it never enters the conv's history either: the official
            # stream marks this cache "Rep" and pads the next chunk with zeros.
            first, rest = x[:, :, :1], x[:, :, 1:]
            if rest.shape[2] == 0:
                return first, ((zero_frames(x, CACHE_FRAMES),) if keep else ())
            y, new = self.time_conv.step(rest, None, keep)
            return torch.cat([first, self._interleave(y)], dim=2), new
        y, new = self.time_conv.step(x, cache, keep)
        return self._interleave(y), new

    @staticmethod
    def _interleave(y: Tensor) -> Tensor:
        """[B, 2C, T, H, W] -> [B, C, 2T, H, W]: channel half s becomes sub-frame s of each frame."""
        b, c2, t, h, w = y.shape
        return y.reshape(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)

    def _time_down(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        assert self.time_conv is not None
        frames = x.shape[2]
        if cache is None:
            if frames % 2 == 0:
                raise ValueError(f"a clip start needs an odd number of frames at a stride-2 time conv, got {frames}")
            y = x[:, :, :1]
            if frames >= 3:
                y = torch.cat([y, self.time_conv(x)], dim=2)
        else:
            if frames % 2:
                raise ValueError(f"a continuing chunk needs an even number of frames at a stride-2 conv, got {frames}")
            y = self.time_conv(torch.cat([cache[0], x], dim=2))
        return y, ((last_frames(x, 1),) if keep else ())


class OutputHead(nn.Sequential):
    """RMSNorm, SiLU, causal conv 3x3x3 (official keys ``head.0``, ``head.2``)."""

    n_cache = 1
    reach = CACHE_FRAMES
    time_stride = 1

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1))

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        return self[2].step(F.silu(self[0](x)), cache, keep)


def run_stages(stages: Sequence[nn.Module], x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
    """Chain ``step`` over stages, handing each its slice of the flat cache tuple."""
    new: list[Tensor] = []
    offset = 0
    for stage in stages:
        n = stage.n_cache
        x, c = stage.step(x, None if cache is None else cache[offset : offset + n], keep)
        new.extend(c)
        offset += n
    return x, tuple(new)


# ------------------------------------------------------------------------------------ encoder / decoder


def _middle(dim: int) -> nn.ModuleList:
    """Residual, per-frame attention, residual (official ``middle.0/1/2``)."""
    return nn.ModuleList([ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim)])


class Encoder(nn.Module):
    """Video [B, 3, F, H, W] -> [B, 2 z, 1 + (F-1)/4, H/8, W/8] (mean and log-variance before ``conv1``)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(cfg.dim_mult) - 1:
                blocks.append(Resample(cout, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.ModuleList(blocks)
        self.middle = _middle(dims[-1])
        self.head = OutputHead(dims[-1], cfg.z_dim * 2)

    def stages(self) -> list[nn.Module]:
        return [self.conv1, *self.downsamples, *self.middle, self.head]

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        return run_stages(self.stages(), x, cache, keep)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None, False)[0]


class Decoder(nn.Module):
    """[B, z, T, h, w] (after ``conv2``) -> video [B, 3, 1 + 4(T-1), 8h, 8w] (unclamped)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = tuple(reversed(cfg.temporal_downsample))
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        blocks: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                cin //= 2  # every upsampler halves the channels it emits
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(cfg.dim_mult) - 1:
                blocks.append(Resample(cout, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = nn.ModuleList(blocks)
        self.head = OutputHead(dims[-1], 3)

    def stages(self) -> list[nn.Module]:
        return [self.conv1, *self.middle, *self.upsamples, self.head]

    def step(self, x: Tensor, cache: Caches | None, keep: bool) -> tuple[Tensor, Caches]:
        return run_stages(self.stages(), x, cache, keep)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None, False)[0]


# ------------------------------------------------------------------------------------------------ model


class WanVAE(nn.Module):
    """The Wan2.1 VAE: deterministic (mean) encoding to normalised latents, causal decoding, streaming state.

    Pixels are in [-1, 1]; latents are ``(mu - mean) / std`` with the config's 16 constants. Decoded videos are
    clamped to [-1, 1]. Inputs are cast to the model's dtype (fp32 or bf16); outputs come back in it.
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VAEConfig()
        self.encoder = Encoder(config)
        self.conv1 = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder(config)
        # Not persistent: they come from the config, so the state dict keeps exactly the official 194 keys.
        self.register_buffer("latent_mean", torch.tensor(config.latent_mean), persistent=False)
        self.register_buffer("latent_std", torch.tensor(config.latent_std), persistent=False)

    # -- loading

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load official (``Wan2.1_VAE.pth``) or diffusers ``AutoencoderKLWan`` names; detected automatically."""
        from .diffusers_keys import to_official_names

        result = super().load_state_dict(to_official_names(state_dict, self.config), strict=strict, assign=assign)
        self._reset_latent_stats()
        return result

    def _reset_latent_stats(self) -> None:
        """Rebuild the stat buffers where the weights live (after a meta build, ``to_empty`` or ``assign``)."""
        device = self.conv1.weight.device
        self.latent_mean = torch.tensor(self.config.latent_mean, device=device)
        self.latent_std = torch.tensor(self.config.latent_std, device=device)

    def to_channels_last(self) -> WanVAE:
        """Conv3d weights to ``channels_last_3d`` and Conv2d weights to ``channels_last``, in place.

        ``Module.to(memory_format=torch.channels_last_3d)`` refuses the 4-D Conv2d weights this model also has.
        Inputs in ``channels_last_3d`` then stay in that layout through the per-frame 2D layers (free views).
        """
        with torch.no_grad():
            for p in self.parameters():
                if p.ndim == 5:
                    p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
                elif p.ndim == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype  # the encoder half: present also where the decoder is left out

    # -- latent normalisation

    def normalize(self, mu: Tensor) -> Tensor:
        """Raw mean [B, z, T, h, w] -> normalised latents (computed in fp32, returned in mu's dtype)."""
        stats = self._stats()
        return ((mu.float() - stats[0]) / stats[1]).to(mu.dtype)

    def denormalize(self, z: Tensor) -> Tensor:
        stats = self._stats()
        return (z.float() * stats[1] + stats[0]).to(z.dtype)

    def _stats(self) -> tuple[Tensor, Tensor]:
        # ``.to(bf16)`` casts buffers too; the constants stay fp32 (bf16 would round 2.8184 to 2.8125).
        stale = self.latent_mean.is_meta or self.latent_mean.dtype != torch.float32
        if stale and not self.conv1.weight.is_meta:  # conv1: the encoder half, present without the decoder too
            self._reset_latent_stats()
        return self.latent_mean.view(1, -1, 1, 1, 1), self.latent_std.view(1, -1, 1, 1, 1)

    # -- pure tensor functions (no checks; compile targets)

    def encode_tensors(self, video: Tensor, cache: Caches | None, keep: bool = True) -> tuple[Tensor, Caches]:
        """video chunk [B, 3, F, H, W] -> normalised latents [B, z, T, H/8, W/8] and the updated cache."""
        h, new = self.encoder.step(video.to(self.dtype), cache, keep)
        mu = self.conv1(h)[:, : self.config.z_dim]
        return self.normalize(mu), new

    def decode_tensors(self, latents: Tensor, cache: Caches | None, keep: bool = True) -> tuple[Tensor, Caches]:
        """latents [B, z, T, h, w] -> clamped video [B, 3, F, 8h, 8w] (F = 4T, or 1 + 4(T-1) at clip start)."""
        x = self.conv2(self.denormalize(latents.to(self.dtype)))
        video, new = self.decoder.step(x, cache, keep)
        return video.clamp(-1.0, 1.0), new

    # -- streaming

    def encode_chunk(self, video: Tensor, state: FeatureCache | None = None) -> tuple[Tensor, FeatureCache]:
        """Continue a stream: first chunk 1 + 4n frames, then 4n frames each -> n (+1 first) latent frames."""
        state = state or FeatureCache()
        cfg = self.config
        check_video_chunk(video, first=not state.started, t_factor=cfg.temporal_factor, s_factor=cfg.spatial_factor)
        state.check_chunk(video)
        z, tensors = self.encode_tensors(video, state.tensors)
        return z, state.advanced(tensors, video)

    def decode_chunk(self, latents: Tensor, state: FeatureCache | None = None) -> tuple[Tensor, FeatureCache]:
        """Continue a stream: T latent frames -> 1 + 4(T-1) frames on the first chunk, 4T after."""
        state = state or FeatureCache()
        check_latents(latents, z_dim=self.config.z_dim)
        state.check_chunk(latents)
        video, tensors = self.decode_tensors(latents, state.tensors)
        return video, state.advanced(tensors, latents)

    # -- whole clips

    def encode(
        self, video: Tensor, *, chunked: bool = True, latent_frames_per_chunk: int = 1, check_range: bool = True
    ) -> Tensor:
        """video [B, 3, F, H, W] in [-1, 1], F = 4n + 1 -> normalised latents [B, z, n + 1, H/8, W/8].

        ``chunked`` (the official schedule: frame 0, then 4 frames per latent frame, with the 2-frame cache)
        bounds memory by the chunk; ``chunked=False`` runs the clip in one causal pass (same result).
        """
        cfg = self.config
        check_video(video, t_factor=cfg.temporal_factor, s_factor=cfg.spatial_factor, check_range=check_range)
        if not chunked:
            return self.encode_tensors(video, None, keep=False)[0]
        step = cfg.temporal_factor * max(1, latent_frames_per_chunk)
        chunks = [video[:, :, :1]] + [c for c in video[:, :, 1:].split(step, dim=2) if c.shape[2]]
        cache: Caches | None = None
        out = []
        for i, chunk in enumerate(chunks):
            z, cache = self.encode_tensors(chunk, cache, keep=i + 1 < len(chunks))
            out.append(z)
        return torch.cat(out, dim=2)

    def decode(self, latents: Tensor, *, chunked: bool = True, latent_frames_per_chunk: int = 1) -> Tensor:
        """Normalised latents [B, z, T, h, w] -> video [B, 3, 1 + 4(T-1), 8h, 8w] clamped to [-1, 1]."""
        check_latents(latents, z_dim=self.config.z_dim)
        if not chunked:
            return self.decode_tensors(latents, None, keep=False)[0]
        chunks = latents.split(max(1, latent_frames_per_chunk), dim=2)
        cache: Caches | None = None
        out = []
        for i, chunk in enumerate(chunks):
            video, cache = self.decode_tensors(chunk, cache, keep=i + 1 < len(chunks))
            out.append(video)
        return torch.cat(out, dim=2)

    def forward(self, video: Tensor) -> Tensor:
        """Reconstruction: decode(encode(video))."""
        return self.decode(self.encode(video))


def infer_config(state_dict: dict[str, Tensor], **overrides) -> VAEConfig:
    """Base width and z from official or diffusers tensors (other fields: defaults or ``overrides``)."""
    from .diffusers_keys import to_official_names

    sd = to_official_names(state_dict, VAEConfig())
    kwargs = {"dim": sd["encoder.conv1.weight"].shape[0], "z_dim": sd["conv2.weight"].shape[0]}
    kwargs.update(overrides)
    return VAEConfig(**kwargs)


def count_parameters(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
