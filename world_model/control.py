"""LingBot-World's camera and action conditioning (docs/official_models.md §6, §7), as control maps for the DiT.

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
    """Cam control map ``[..., 6*64, T, H/8, W/8]`` from deltas ``[..., T, 4, 4]`` and camera rays ``[3, H, W]``."""
    dirs = torch.einsum("...ij,jhw->...ihw", rel_poses[..., :3, :3].float(), rays.float())
    origins = rel_poses[..., :3, 3].float()[..., None, None].expand_as(dirs)
    return space_to_depth(torch.cat([origins, dirs], dim=-3)).transpose(-3, -4)


def act_control(rotations: torch.Tensor, wasd: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Act control map ``[..., 7*64, T, H/8, W/8]`` from delta rotations ``[..., T, 3, 3]`` and keys
    ``[..., T, 4]`` (W, A, S, D multi-hot)."""
    dirs = torch.einsum("...ij,jhw->...ihw", rotations.float(), rays.float())
    keys = wasd.float()[..., None, None].expand(*wasd.shape, *rays.shape[1:])
    return space_to_depth(torch.cat([dirs, keys], dim=-3)).transpose(-3, -4)


def yaw_pitch_matrices(
    yaw_deg: torch.Tensor, pitch_deg: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Batched :func:`yaw_pitch_rotation`: ``[...]`` degrees -> ``[..., 3, 3]`` (``R_yaw @ R_pitch``) of ``dtype``."""
    y, p = torch.deg2rad(yaw_deg.to(dtype)), torch.deg2rad(pitch_deg.to(dtype))
    cy, sy, cp, sp = y.cos(), y.sin(), p.cos(), p.sin()
    zero, one = torch.zeros_like(y), torch.ones_like(y)
    r_yaw = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    r_pitch = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).unflatten(-1, (3, 3))
    return r_yaw @ r_pitch


def yaw_pitch_rotation(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """Rotation ``[3, 3]`` (float64) of a camera turned right by ``yaw_deg`` and up by ``pitch_deg`` (OpenCV axes:
    yaw about the world up axis -y, then pitch about the camera x axis)."""
    return yaw_pitch_matrices(torch.tensor(float(yaw_deg)), torch.tensor(float(pitch_deg)), torch.float64)


class KeyboardCamera:
    """The official keyboard-to-camera mapping, for ``batch_size`` cameras at once (one per env row).

    Per video frame: ``yaw += yaw_action * turn_deg`` about the world up axis; ``pitch = clip(pitch + pitch_action *
    turn_deg, +-max_pitch_deg)`` about the camera x axis; W/S move ``step`` units along the forward vector and A/D
    along the right vector, both projected on the ground plane. Poses are camera-to-world ``[4, 4]`` float64 in
    OpenCV axes (x right, y down, z forward); yaw > 0 = turned right, pitch > 0 = looking up. This is the one
    integrator of camera pose: the Cam control (:class:`ActionControl`) and the env's ``info["pose"]`` both use it.
    """

    def __init__(
        self, step: float = 0.05, turn_deg: float = 2.0, max_pitch_deg: float = 85.0, batch_size: int = 1
    ) -> None:
        self.step, self.turn_deg, self.max_pitch_deg, self.batch_size = step, turn_deg, max_pitch_deg, batch_size
        self.reset()

    @classmethod
    def for_control(cls, config: ActionControlConfig | None, batch_size: int) -> KeyboardCamera:
        """The cameras a control config drives (the official defaults when the model has no control)."""
        if config is None:
            return cls(batch_size=batch_size)
        return cls(config.cam_step, config.turn_deg_per_frame, config.pitch_limit_deg, batch_size)

    def _rows(self, rows) -> torch.Tensor | slice:
        return slice(None) if rows is None else torch.as_tensor(list(rows), dtype=torch.long)

    def reset(self, rows=None) -> None:
        if rows is None:
            self.position = torch.zeros(self.batch_size, 3, dtype=torch.float64)
            self.yaw = torch.zeros(self.batch_size, dtype=torch.float64)  # degrees, positive = turned right
            self.pitch = torch.zeros(self.batch_size, dtype=torch.float64)  # degrees, positive = looking up
            return
        idx = self._rows(rows)
        self.position[idx], self.yaw[idx], self.pitch[idx] = 0.0, 0.0, 0.0

    def pose(self, rows=None) -> torch.Tensor:
        """Current camera-to-world ``[n, 4, 4]`` float64 of ``rows`` (default: all)."""
        idx = self._rows(rows)
        out = torch.eye(4, dtype=torch.float64).repeat(len(self.yaw[idx]), 1, 1)
        out[:, :3, :3] = yaw_pitch_matrices(self.yaw[idx], self.pitch[idx], torch.float64)
        out[:, :3, 3] = self.position[idx]
        return out

    def yaw_pitch(self, rows=None) -> torch.Tensor:
        """Accumulated ``(yaw, pitch)`` in degrees, ``[n, 2]`` float64."""
        idx = self._rows(rows)
        return torch.stack([self.yaw[idx], self.pitch[idx]], -1)

    def advance(self, wasd: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor, rows=None) -> torch.Tensor:
        """One video frame: keys ``wasd`` ``[n, 4]`` in {0, 1}; ``yaw``, ``pitch`` ``[n]`` in [-1, 1] of ``turn_deg``.
        Returns the poses ``[n, 4, 4]``."""
        idx = self._rows(rows)
        wasd = torch.as_tensor(wasd, dtype=torch.float64).reshape(-1, 4)
        self.yaw[idx] += torch.as_tensor(yaw, dtype=torch.float64) * self.turn_deg
        turned = self.pitch[idx] + torch.as_tensor(pitch, dtype=torch.float64) * self.turn_deg
        self.pitch[idx] = turned.clamp(-self.max_pitch_deg, self.max_pitch_deg)
        th = torch.deg2rad(self.yaw[idx])  # the ground-plane frame: forward and right at pitch 0
        forward = torch.stack([th.sin(), torch.zeros_like(th), th.cos()], -1)
        right = torch.stack([th.cos(), torch.zeros_like(th), -th.sin()], -1)
        w, a, s, d = wasd.unbind(-1)
        self.position[idx] += self.step * ((w - s)[:, None] * forward + (d - a)[:, None] * right)
        return self.pose(rows)

    def hold(self, actions: torch.Tensor, frames: int, rows=None, key_threshold: float = 0.5) -> torch.Tensor:
        """Hold ``actions`` ``[n, 6]`` (keys pressed above ``key_threshold``) for ``frames`` video frames; returns
        the poses of every frame ``[n, frames, 4, 4]`` float64."""
        actions = torch.as_tensor(actions, dtype=torch.float64)
        keys = (actions[:, :4] > key_threshold).double()
        return torch.stack([self.advance(keys, actions[:, 4], actions[:, 5], rows) for _ in range(frames)], 1)


def act_control_from_actions(actions: torch.Tensor, rays: torch.Tensor, config: ActionControlConfig) -> torch.Tensor:
    """Stateless act control of a clip: ``actions`` ``[B, n, 6]`` -> ``[B, 7*64, n + 1, H/8, W/8]``.

    Latent frame 0 (the conditioning image) gets the identity rotation and no keys; latent frame ``i + 1`` gets
    action ``i``. Pitch is not clamped (training clips start at unknown pitch; the game clamps on its own)."""
    b = actions.shape[0]
    per_latent = config.turn_deg_per_frame * config.frames_per_latent
    zero = actions.new_zeros(b, 1, 6)
    acts = torch.cat([zero, actions.float()], dim=1)
    keys = (acts[..., :4] > config.key_threshold).float()
    yaw, pitch = acts[..., 4].clamp(-1, 1) * per_latent, acts[..., 5].clamp(-1, 1) * per_latent
    return act_control(yaw_pitch_matrices(yaw, pitch), keys, rays.to(actions.device))


@dataclass(frozen=True)
class ActionControlConfig:
    """How ``[W, A, S, D, yaw, pitch]`` action vectors become the DiT's control map.

    ``yaw``/``pitch`` in [-1, 1] are fractions of ``turn_deg_per_frame`` per video frame, held for the
    ``frames_per_latent`` video frames of one latent frame; keys count as pressed above ``key_threshold``.
    """

    kind: str = "act"  # "act" (7 ch: rays of the delta rotation + WASD) or "cam" (6 ch: ray origin + direction)
    height: int = 480
    width: int = 832
    turn_deg_per_frame: float = 2.0
    frames_per_latent: int = 4
    key_threshold: float = 0.5
    pitch_limit_deg: float = 85.0
    fov_deg: float = 90.0
    cam_step: float = 0.05  # keyboard-to-camera units per video frame (official mapping)

    def __post_init__(self) -> None:
        if self.kind not in ("act", "cam"):
            raise ValueError(f"control kind must be 'act' or 'cam', got {self.kind!r}")
        if self.height % 16 or self.width % 16:
            raise ValueError(f"control map size {self.height}x{self.width} must be a multiple of 16")


class ActionControl:
    """Stateful per-row conversion of actions ``[B, T, 6]`` into control maps ``[B, C*64, T, H/8, W/8]``.

    Act: per latent frame the rotation of this step's yaw/pitch (pitch clamped to the limit, so pushing against
    it turns nothing) and the WASD multi-hot. Cam: each row integrates the official keyboard-to-camera mapping
    frame by frame; the control is the delta pose between consecutive latent frames, translations divided by the
    largest possible step (``cam_step * frames_per_latent``) since a stream cannot see its future to normalise.
    """

    def __init__(self, config: ActionControlConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        c = config
        self.rays = pixel_rays(default_intrinsics(c.height, c.width, c.fov_deg), c.height, c.width, (c.height, c.width))
        self.camera = KeyboardCamera.for_control(c, batch_size)
        self.pitch = torch.zeros(batch_size)

    @property
    def channels(self) -> int:
        return 7 if self.config.kind == "act" else 6

    def reset(self, rows=None) -> None:
        self.camera.reset(rows)
        for b in range(self.batch_size) if rows is None else rows:
            self.pitch[b] = 0.0

    def identity(self, batch: int | None = None) -> torch.Tensor:
        """Control of a frame with no motion (the conditioning image): ``[B, C*64, 1, H/8, W/8]``."""
        b = self.batch_size if batch is None else batch
        if self.config.kind == "act":
            return act_control(torch.eye(3).expand(b, 1, 3, 3), torch.zeros(b, 1, 4), self.rays)
        return cam_control(torch.eye(4).expand(b, 1, 4, 4), self.rays)

    def __call__(self, actions: torch.Tensor, rows=None) -> torch.Tensor:
        """``actions`` ``[len(rows), T, 6]`` (rows default: all) -> control ``[len(rows), C*64, T, H/8, W/8]``."""
        c = self.config
        rows = list(range(self.batch_size)) if rows is None else list(rows)
        actions = torch.as_tensor(actions, dtype=torch.float32)
        if actions.ndim != 3 or actions.shape[-1] != 6 or actions.shape[0] != len(rows):
            raise ValueError(f"actions must be [{len(rows)}, T, 6], got {tuple(actions.shape)}")
        keys = (actions[..., :4] > c.key_threshold).float()
        if c.kind == "act":
            per_latent = c.turn_deg_per_frame * c.frames_per_latent
            yaw = actions[..., 4].clamp(-1, 1) * per_latent
            pitch = torch.empty_like(yaw)
            for t in range(actions.shape[1]):  # the clamp makes pitch stateful
                old = self.pitch[rows]
                new = (old + actions[:, t, 5].clamp(-1, 1) * per_latent).clamp(-c.pitch_limit_deg, c.pitch_limit_deg)
                pitch[:, t] = new - old
                self.pitch[rows] = new
            return act_control(yaw_pitch_matrices(yaw, pitch), keys, self.rays)
        deltas = torch.empty(len(rows), actions.shape[1], 4, 4, dtype=torch.float64)
        for t in range(actions.shape[1]):
            before = self.camera.pose(rows)
            after = self.camera.hold(actions[:, t], c.frames_per_latent, rows, c.key_threshold)[:, -1]
            deltas[:, t] = torch.linalg.inv(before) @ after
        deltas[..., :3, 3] /= c.cam_step * c.frames_per_latent
        return cam_control(deltas, self.rays)
