"""Configuration of the Wan DiT, as plain dataclasses.

The field names follow the official ``config.json`` of Wan2.1/2.2 and LingBot-World so that a checkpoint's config
maps onto :class:`WanDiTConfig` one to one (see :meth:`WanDiTConfig.from_official`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Features of the LingBot control map per pixel: cam = ray origin (3) + ray direction (3);
# act = ray direction (3) + WASD multi-hot (4).
CONTROL_CHANNELS = {"cam": 6, "act": 7}


@dataclass(frozen=True)
class WanDiTConfig:
    """Shape of a Wan DiT. Defaults are one LingBot-World / Wan2.2 I2V-A14B expert."""

    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_dim: int = 36  # 16 noisy latent channels + 20 image condition channels (4 mask + 16 latent)
    out_dim: int = 16
    text_dim: int = 4096  # umT5-XXL width
    text_len: int = 512
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    control_dim: int | None = None  # None: no control layers; 6: cam; 7: act
    control_patch: int = 8  # space-to-depth factor of the per-pixel control map (the VAE's spatial stride)
    rope_max_positions: int = 1024
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        hd = self.dim // self.num_heads
        if hd % 2 or hd < 8:
            raise ValueError(f"head_dim={hd} must be even and >= 8 for the 3D RoPE split")
        if self.control_dim not in (None, *CONTROL_CHANNELS.values()):
            raise ValueError(f"control_dim must be None, 6 (cam) or 7 (act), got {self.control_dim}")
        if self.in_dim < self.out_dim:
            raise ValueError(f"in_dim={self.in_dim} < out_dim={self.out_dim}: in_dim counts the noisy latent too")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def cond_dim(self) -> int:
        """Channels of the image condition ``y`` concatenated to the noisy latent (20 for I2V, 0 for T2V)."""
        return self.in_dim - self.out_dim

    @property
    def patch_tokens(self) -> int:
        pt, ph, pw = self.patch_size
        return pt * ph * pw

    @property
    def control_in_features(self) -> int:
        """Input width of ``patch_embedding_wancamctrl``: 6*64*4 = 1536 (cam), 7*64*4 = 1792 (act)."""
        if self.control_dim is None:
            return 0
        return self.control_dim * self.control_patch**2 * self.patch_tokens

    @property
    def control_type(self) -> str | None:
        return {v: k for k, v in CONTROL_CHANNELS.items()}.get(self.control_dim)

    @classmethod
    def from_official(cls, cfg: dict[str, Any], control_dim: int | None = None, **overrides: Any) -> WanDiTConfig:
        """Build from an official ``config.json`` dict. The file names no control type: pass it (or infer it
        from the checkpoint tensors, see ``world_model.checkpoints``)."""
        known = {"dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_len", "freq_dim", "eps"}
        # Our own config.json files also carry what the official ones leave implicit.
        known |= {"text_dim", "control_dim", "control_patch", "rope_max_positions"}
        kwargs = {k: cfg[k] for k in known if k in cfg}
        if "patch_size" in cfg:
            kwargs["patch_size"] = tuple(cfg["patch_size"])
        kwargs["extra"] = {k: v for k, v in cfg.items() if k not in known and k != "patch_size"}
        if control_dim is not None:
            kwargs["control_dim"] = control_dim
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_official(self) -> dict[str, Any]:
        """The ``config.json`` form (the official keys, plus ours for what the official file lacks)."""
        d = asdict(self)
        extra = d.pop("extra")
        d["patch_size"] = list(self.patch_size)
        out = {"_class_name": "WanModel", "model_type": "i2v" if self.cond_dim else "t2v", **d}
        out.update({k: v for k, v in extra.items() if k not in out})
        return out
