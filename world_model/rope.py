"""3D rotary position embedding of the Wan DiT.

``head_dim`` channels are ``head_dim / 2`` complex pairs on *adjacent* channels ``(2i, 2i+1)``. The pairs are split
between the three token axes: frame, row, column. For head_dim 128 that is 22 / 21 / 21 pairs, i.e. per-axis
dimensions ``D_axis = 44, 42, 42`` with frequencies ``theta^(-2j / D_axis)``. The split generalises to any even
head_dim: ``D_row = D_col = 2 * (head_dim // 6)``, ``D_frame = head_dim - 2 * D_row``.

Positions are passed explicitly so that a KV cache can place cached frames at cache-relative positions
(sink frames first, then the window, then the query), keeping every position inside the table.
"""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Per-axis rotary dimensions (frame, row, col); each is twice its number of complex pairs."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _axis_angles(max_positions: int, axis_dim: int, theta: float) -> torch.Tensor:
    """Angles ``pos * theta^(-2j/axis_dim)``: ``[max_positions, axis_dim // 2]`` in float64."""
    j = torch.arange(0, axis_dim, 2, dtype=torch.float64)
    inv_freq = theta ** (-j / axis_dim)
    return torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)


class Rope3D:
    """Cos/sin tables of the 3D RoPE, built lazily per device (so a model built on ``meta`` needs none)."""

    def __init__(self, head_dim: int, max_positions: int = 1024, theta: float = 10000.0) -> None:
        self.head_dim = head_dim
        self.max_positions = max_positions
        self.theta = theta
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _angles(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._tables:
            dims = rope_axis_dims(self.head_dim)
            self._tables[device] = tuple(
                _axis_angles(self.max_positions, d, self.theta).float().to(device) for d in dims
            )
        return self._tables[device]

    def cos_sin(self, frame_positions: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for tokens ordered (frame, row, col).

        Args:
            frame_positions: ``[F]`` integer position of each frame (need not be contiguous).
            height, width: token grid size of one frame.
        Returns:
            ``cos, sin``: ``[F * height * width, head_dim // 2]`` float32.
        """
        # Reading the positions back is a host sync and a graph break under torch.compile: checked in eager only.
        checked = not torch.compiler.is_compiling() and frame_positions.numel()
        if checked and int(frame_positions.max()) >= self.max_positions:
            raise ValueError(
                f"frame position {int(frame_positions.max())} is outside the RoPE table of "
                f"{self.max_positions} positions: use a rolling KV cache (window + sinks) for long videos"
            )
        if max(height, width) > self.max_positions:
            raise ValueError(f"token grid {height}x{width} exceeds the RoPE table of {self.max_positions}")
        af, ah, aw = self._angles(frame_positions.device)
        nf = frame_positions.numel()
        f = af[frame_positions.long()][:, None, None, :].expand(nf, height, width, -1)
        h = ah[:height][None, :, None, :].expand(nf, height, width, -1)
        w = aw[:width][None, None, :, :].expand(nf, height, width, -1)
        ang = torch.cat([f, h, w], dim=-1).reshape(nf * height * width, -1)
        return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` ``[B, L, H, D]`` by tables ``[L, D/2]`` (shared by the batch) or
    ``[B, L, D/2]`` (one per row); math in float32."""
    b, seq, heads, d = x.shape
    xf = x.float().reshape(b, seq, heads, d // 2, 2)
    x0, x1 = xf.unbind(-1)
    c, s = (cos[None, :, None, :], sin[None, :, None, :]) if cos.ndim == 2 else (cos[:, :, None], sin[:, :, None])
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    return out.reshape(b, seq, heads, d).to(x.dtype)
