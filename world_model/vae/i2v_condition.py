"""The I2V condition ``y`` (docs/official_models.md §5) without encoding F-1 constant frames the slow way.

``y = cat([mask (4 ch), VAE-encode([image, F-1 fill frames]) (16 ch)])`` at [B, 20, T, H/8, W/8],
T = 1 + (F-1)/4; mask = ones on latent frame 0, zeros elsewhere. The official code's "black" frames are
``torch.zeros`` in the [-1, 1] pixel range (mid-grey in pixel terms), hence ``fill_value=0.0``.

What is image-independent, and what is not
-------------------------------------------
Every temporal operator in the encoder is causal with a finite reach: a 3x3x3 causal conv sees 2 earlier
frames, a residual block 4, the stride-2 time conv maps input frames 2j-2..2j to output j; norms, SiLU,
spatial convs and the mid-block attention act within one frame. So at every layer the clip splits into

- a *prefix* of frames that see the image (directly or through earlier layers), and
- a *tail* where every frame sees only fill frames: all tail frames of a layer are the same tensor, the
  layer's *steady state*, which depends on the resolution, the fill value and the weights but not on the image.

Tracking the prefix through the released layout (frame indices at each layer's output): conv1 0..2, first
two residual blocks 0..10, then 0..18 before the first time downsample, 0..10 after it, 0..18 before the
second, 0..10 after it, 0..26 after the mid-block and 0..28 after the head. So **latent frames 0..28 depend on
the image** (29 latent frames = 113 video frames): for every usual F (81 -> 21 latent frames) no latent frame
is image-independent, and any shortcut that encodes only the image and pastes cached "black" latents after it is
wrong. Exactness requires computing the prefix; what can be skipped is every tail frame at every layer.

The fast path therefore runs each encoder stage only on its prefix frames, padded on the right with as many
copies of the (cached) steady state as the stage's reach needs, and takes the stage's new steady state from the
per-resolution cache. High-resolution layers, where the cost is, see ~3-19 frames instead of F. The steady
states are computed once per (H, W, fill, dtype, device, weights) from a few constant frames. Latent frames past
the prefix (F > 113) are the cached steady latent. The result equals the slow encode to float rounding (the
same operations on the same values, only batched over fewer frames); tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .validation import check_frame_count, check_image
from .wan_vae import WanVAE

MASK_CHANNELS = 4


def i2v_mask(batch: int, latent_frames: int, height: int, width: int, *, like: Tensor) -> Tensor:
    """[B, 4, T, h, w]: ones on latent frame 0 (the 4 video frames folded into it are all "given"), zeros after."""
    mask = torch.zeros(batch, MASK_CHANNELS, latent_frames, height, width, dtype=like.dtype, device=like.device)
    mask[:, :, 0] = 1
    return mask


def i2v_condition_slow(vae: WanVAE, image: Tensor, num_frames: int, fill_value: float = 0.0) -> Tensor:
    """Reference: encode the full [image, F-1 fill frames] clip with the chunked encoder. [B, 20, T, H/8, W/8]."""
    cfg = vae.config
    check_image(image, s_factor=cfg.spatial_factor)
    check_frame_count(num_frames, cfg.temporal_factor, "num_frames")
    b, _, h, w = image.shape
    fill = torch.full((b, 3, num_frames - 1, h, w), fill_value, dtype=image.dtype, device=image.device)
    latents = vae.encode(torch.cat([image.unsqueeze(2), fill], dim=2))
    mask = i2v_mask(b, latents.shape[2], latents.shape[3], latents.shape[4], like=latents)
    return torch.cat([mask, latents], dim=1)


@dataclass(frozen=True)
class _SteadyKey:
    height: int
    width: int
    fill_value: float
    dtype: torch.dtype
    device: torch.device
    weights: tuple[int, ...]


@dataclass
class PrefixStats:
    """Frames each encoder stage computed in the last call: fast path vs. what a full encode runs."""

    fast_frames: list[int]
    full_frames: list[int]


class I2VConditionBuilder:
    """image [B, 3, H, W] in [-1, 1] + F -> y [B, 4 + z, T, H/8, W/8], exact, encoding only image-dependent frames.

    Keeps one cache of steady states per resolution (and fill value, dtype, device and weights version); the
    VAE is assumed frozen, and an in-place weight update is detected through the parameters' version counters.
    """

    def __init__(self, vae: WanVAE, fill_value: float = 0.0) -> None:
        self.vae = vae
        self.fill_value = float(fill_value)
        self._steady: dict[_SteadyKey, list[Tensor]] = {}
        self.last_stats: PrefixStats | None = None

    def clear_cache(self) -> None:
        self._steady.clear()

    @property
    def cached_resolutions(self) -> list[tuple[int, int]]:
        return [(k.height, k.width) for k in self._steady]

    @torch.no_grad()
    def __call__(self, image: Tensor, num_frames: int) -> Tensor:
        vae = self.vae
        cfg = vae.config
        check_image(image, s_factor=cfg.spatial_factor)
        check_frame_count(num_frames, cfg.temporal_factor, "num_frames")
        image = image.to(vae.dtype)
        b, _, h, w = image.shape
        stages = vae.encoder.stages()
        steady = self._steady_states(h, w, image.device, stages)

        head = image.unsqueeze(2)  # [B, 3, 1, H, W]: the image-dependent prefix of the input clip
        length = num_frames
        fast, full = [], []
        for stage, s_in in zip(stages, steady[:-1]):
            prefix = head.shape[2]
            if stage.time_stride == 2:
                out_len = 1 + (length - 1) // 2
                # Output j >= 1 reads input 2j-2..2j: it is steady once 2j-2 >= prefix.
                out_prefix = min((prefix + 1) // 2 + 1, out_len)
                need = 2 * out_prefix - 1
            else:
                out_len = length
                out_prefix = min(prefix + stage.reach, length)
                need = out_prefix
            if need > prefix:
                pad = s_in.expand(b, -1, need - prefix, -1, -1)
                head = torch.cat([head, pad], dim=2)
            head = stage.step(head, None, False)[0]
            fast.append(need)
            full.append(length)
            length = out_len
        self.last_stats = PrefixStats(fast, full)

        latents = vae.normalize(vae.conv1(head)[:, : cfg.z_dim])
        latent_frames = cfg.num_latent_frames(num_frames)
        if latents.shape[2] < latent_frames:
            tail = steady[-1].expand(b, -1, latent_frames - latents.shape[2], -1, -1)
            latents = torch.cat([latents, tail], dim=2)
        mask = i2v_mask(b, latent_frames, latents.shape[3], latents.shape[4], like=latents)
        return torch.cat([mask, latents], dim=1)

    def _steady_states(self, h: int, w: int, device: torch.device, stages: list[nn.Module]) -> list[Tensor]:
        """Per-stage steady states [1, C, 1, H_l, W_l] for a clip of fill frames; the last entry is the latent."""
        vae = self.vae
        params = list(vae.encoder.parameters()) + list(vae.conv1.parameters())
        key = _SteadyKey(h, w, self.fill_value, vae.dtype, torch.device(device), tuple(p._version for p in params))
        if key in self._steady:
            return self._steady[key]
        # A weights change invalidates every resolution's entry: drop stale ones rather than let them pile up.
        self._steady = {k: v for k, v in self._steady.items() if k.weights == key.weights}
        s = torch.full((1, 3, 1, h, w), self.fill_value, dtype=vae.dtype, device=device)
        states = [s]
        for stage in stages:
            # Enough constant frames that the last output reads only constants (no clip-start padding).
            frames = 3 if stage.time_stride == 2 else stage.reach + 1
            s = stage.step(s.expand(-1, -1, frames, -1, -1), None, False)[0][:, :, -1:]
            states.append(s)
        states.append(vae.normalize(vae.conv1(s)[:, : vae.config.z_dim]))
        self._steady[key] = states
        return states
