"""LingBot-World's camera and action conditioning (REFERENCE section 3), as control maps for the DiT.

Cam (6 ch): per pixel ``[ray origin (3), ray direction (3)]`` of frame-to-frame camera deltas (OpenCV convention:
x right, y down, z forward), translations divided by the largest delta norm. Act (7 ch): ray direction of the delta
rotation (3) + WASD multi-hot (4) broadcast over the image. Both are then folded 8x8 (space to depth) to latent
resolution: ``[B, C*64, T, H/8, W/8]``, channel index ``c * 64 + dy * 8 + dx``.

:class:`KeyboardCamera` is the official keyboard-to-camera mapping used to drive the Cam model from keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SPACE_TO_DEPTH = 8


def space_to_depth(x: torch.Tensor, factor: int = SPACE_TO_DEPTH) -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., C * factor^2, H / factor, W / factor]`` (channel slowest, then dy, dx)."""
    *lead, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"control map size {h}x{w} is not divisible by {factor}")
    x = x.reshape(*lead, c, h // factor, factor, w // factor, factor)
    x = x.movedim(-3, -4).movedim(-1, -3)  # (c, h', dy, w', dx) -> (c, dy, dx, h', w')
    return x.reshape(*lead, c * factor * factor, h // factor, w // factor)


def pixel_rays(intrinsics: torch.Tensor | tuple, height: int, width: int, ref_size=(480, 832)) -> torch.Tensor:
    """Unit ray directions in camera space through pixel centres: ``[3, H, W]``.

    ``intrinsics`` = (fx, fy, cx, cy) given for a ``ref_size`` (H, W) image (LingBot's are for 480x832) and
    rescaled to ``height x width``."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    sy, sx = height / ref_size[0], width / ref_size[1]
    fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    d = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)])
    return d / d.norm(dim=0, keepdim=True)


def default_intrinsics(height: int, width: int, fov_deg: float = 90.0) -> tuple[float, float, float, float]:
    """Pinhole intrinsics of a ``fov_deg`` horizontal field of view (Doom's default is 90 degrees)."""
    f = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return f, f, width / 2, height / 2


def _slerp_rot(r0: torch.Tensor, r1: torch.Tensor, a: float) -> torch.Tensor:
    """Rotation ``r0 @ exp(a * log(r0^T r1))`` through the axis-angle of the relative rotation."""
    rel = r0.T @ r1
    cos = ((torch.trace(rel) - 1) / 2).clamp(-1, 1)
    ang = torch.arccos(cos)
    if ang < 1e-8:
        return r0.clone()
    axis = torch.stack([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]]) / (2 * torch.sin(ang))
    return r0 @ axis_angle(axis, float(ang) * a)


def axis_angle(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotation matrix ``[3, 3]`` (float64) of ``angle`` radians about ``axis`` (Rodrigues)."""
    k = axis.double() / axis.double().norm()
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def resample_poses(c2w: torch.Tensor, num: int) -> torch.Tensor:
    """``[N, 4, 4]`` camera-to-world poses -> ``[num, 4, 4]`` evenly resampled (lerp translation, slerp rotation)."""
    c2w = c2w.double()
    n = c2w.shape[0]
    out = torch.eye(4, dtype=torch.float64).repeat(num, 1, 1)
    for i, s in enumerate(torch.linspace(0, n - 1, num, dtype=torch.float64)):
        j = min(int(s), n - 2) if n > 1 else 0
        a = float(s - j) if n > 1 else 0.0
        k = min(j + 1, n - 1)
        out[i, :3, 3] = (1 - a) * c2w[j, :3, 3] + a * c2w[k, :3, 3]
        out[i, :3, :3] = _slerp_rot(c2w[j, :3, :3], c2w[k, :3, :3], a)
    return out


def relative_poses(c2w: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Frame-to-frame deltas: frame 0 identity, frame i = inv(P[i-1]) @ P[i]; translations / max delta norm."""
    c2w = c2w.double()
    rel = torch.eye(4, dtype=torch.float64).repeat(c2w.shape[0], 1, 1)
    rel[1:] = torch.linalg.inv(c2w[:-1]) @ c2w[1:]
    if normalize:
        scale = rel[:, :3, 3].norm(dim=-1).max()
        if scale > 0:
            rel[:, :3, 3] /= scale
    return rel


def cam_control(rel_poses: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Cam control map ``[6*64, T, H/8, W/8]`` from deltas ``[T, 4, 4]`` and camera rays ``[3, H, W]``."""
    rot = rel_poses[:, :3, :3].float()
    dirs = torch.einsum("tij,jhw->tihw", rot, rays.float())
    origins = rel_poses[:, :3, 3].float()[:, :, None, None].expand_as(dirs)
    return space_to_depth(torch.cat([origins, dirs], dim=1)).transpose(0, 1)


def act_control(rotations: torch.Tensor, wasd: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Act control map ``[7*64, T, H/8, W/8]`` from delta rotations ``[T, 3, 3]``, keys ``[T, 4]`` (W, A, S, D)."""
    dirs = torch.einsum("tij,jhw->tihw", rotations.float(), rays.float())
    keys = wasd.float()[:, :, None, None].expand(-1, -1, *rays.shape[1:])
    return space_to_depth(torch.cat([dirs, keys], dim=1)).transpose(0, 1)


def yaw_pitch_rotation(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """Delta rotation ``[3, 3]`` of a camera turning right by ``yaw_deg`` and up by ``pitch_deg`` (OpenCV axes:
    yaw about the up axis -y, pitch about the camera x axis; positive pitch looks up)."""
    yaw = axis_angle(torch.tensor([0.0, -1.0, 0.0]), -math.radians(yaw_deg))
    pitch = axis_angle(torch.tensor([1.0, 0.0, 0.0]), math.radians(pitch_deg))
    return yaw @ pitch


@dataclass
class KeyboardCamera:
    """The official keyboard-to-camera mapping: per video frame W/S move ``step`` units along the forward vector and
    A/D along the right vector, both projected on the ground plane; yaw turns ``turn_deg`` about the world up axis;
    pitch ``turn_deg`` about the camera x axis, clamped to +-``max_pitch_deg``. Integrates camera-to-world poses."""

    step: float = 0.05
    turn_deg: float = 2.0
    max_pitch_deg: float = 85.0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.position = torch.zeros(3, dtype=torch.float64)
        self.yaw = 0.0  # degrees, positive = turned right
        self.pitch = 0.0  # degrees, positive = looking up

    def pose(self) -> torch.Tensor:
        """Current camera-to-world ``[4, 4]`` (OpenCV camera axes)."""
        p = torch.eye(4, dtype=torch.float64)
        p[:3, :3] = yaw_pitch_rotation(self.yaw, self.pitch)
        p[:3, 3] = self.position
        return p

    def advance(self, wasd: tuple[float, float, float, float], yaw: float, pitch: float) -> torch.Tensor:
        """One video frame: keys W, A, S, D in {0, 1}; ``yaw``, ``pitch`` in [-1, 1] of ``turn_deg``. Returns pose."""
        self.yaw += yaw * self.turn_deg
        self.pitch = max(-self.max_pitch_deg, min(self.max_pitch_deg, self.pitch + pitch * self.turn_deg))
        rot = yaw_pitch_rotation(self.yaw, 0.0)  # ground-plane frame
        forward, right = rot[:, 2], rot[:, 0]
        w, a, s, d = wasd
        self.position = self.position + self.step * ((w - s) * forward + (d - a) * right)
        return self.pose()
