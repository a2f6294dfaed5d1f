"""Camera poses of the env rows for ``info["pose"]``: the core's one integrator,
:class:`world_model.control.KeyboardCamera`, held per env step and handed out as numpy float32."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from world_model.control import KeyboardCamera
from world_model.world import InteractiveWorld


class PoseTracker:
    """The poses of a world's ``batch_size`` rows, integrated per video frame with the official keyboard-to-camera
    mapping of the world's control config (camera-to-world ``[4, 4]``, OpenCV axes; see :class:`KeyboardCamera`)."""

    def __init__(self, camera: KeyboardCamera, frames_per_step: int, key_threshold: float = 0.5) -> None:
        self.camera, self.frames_per_step, self.key_threshold = camera, frames_per_step, key_threshold

    @classmethod
    def for_world(cls, world: InteractiveWorld) -> PoseTracker:
        c = world.spec.control
        camera = KeyboardCamera.for_control(c, world.batch_size)
        return cls(camera, world.spec.frames_per_step, 0.5 if c is None else c.key_threshold)

    def reset(self, rows: Sequence[int] | None = None) -> None:
        self.camera.reset(rows)

    def pose(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Current poses ``float32 [n, 4, 4]``."""
        return self.camera.pose(rows).float().numpy()

    def advance(self, actions: np.ndarray, rows: Sequence[int] | None = None, frames: int | None = None) -> np.ndarray:
        """Hold ``actions`` ``[n, 6]`` for one step of ``frames`` video frames (default ``frames_per_step``; LingBot
        Fast's first chunk has fewer); returns their poses ``float32 [n, frames, 4, 4]``."""
        frames = self.frames_per_step if frames is None else frames
        poses = self.camera.hold(torch.as_tensor(np.asarray(actions)), frames, rows, self.key_threshold)
        return poses.float().numpy()

    def yaw_pitch(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Accumulated ``(yaw, pitch)`` in degrees, ``float32 [n, 2]``."""
        return self.camera.yaw_pitch(rows).float().numpy()
