"""LingBot camera/action control maps and the keyboard-to-camera mapping."""

import math

import pytest
import torch

from world_model.control import (
    KeyboardCamera,
    act_control,
    cam_control,
    default_intrinsics,
    pixel_rays,
    relative_poses,
    resample_poses,
    space_to_depth,
    yaw_pitch_rotation,
)


def test_space_to_depth_order():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 16, 16)
    y = space_to_depth(x)
    assert y.shape == (128, 2, 2)
    c, dy, dx, h, w = 1, 3, 5, 1, 0
    assert y[c * 64 + dy * 8 + dx, h, w] == x[c, h * 8 + dy, w * 8 + dx]
    with pytest.raises(ValueError, match="divisible"):
        space_to_depth(torch.zeros(1, 12, 16))


def test_relative_poses_and_resampling():
    poses = torch.eye(4).repeat(5, 1, 1).double()
    poses[:, 0, 3] = torch.arange(5) * 2.0
    rel = relative_poses(poses)
    assert torch.allclose(rel[0], torch.eye(4, dtype=torch.float64))
    assert torch.allclose(rel[1:, 0, 3], torch.ones(4, dtype=torch.float64))  # divided by the largest delta
    res = resample_poses(poses, 9)
    assert torch.allclose(res[:, 0, 3], torch.linspace(0, 8, 9, dtype=torch.float64))


def test_control_maps_shapes_and_content():
    rays = pixel_rays(default_intrinsics(32, 48), 32, 48, ref_size=(32, 48))
    assert rays.shape == (3, 32, 48) and torch.allclose(rays.norm(dim=0), torch.ones(32, 48))
    assert rays[2].min() > 0  # all rays point forward
    rel = torch.eye(4).repeat(3, 1, 1).double()
    cam = cam_control(rel, rays)
    assert cam.shape == (6 * 64, 3, 4, 6)
    rot = torch.stack([yaw_pitch_rotation(0, 0), yaw_pitch_rotation(10, 0)])
    act = act_control(rot, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]]), rays)
    assert act.shape == (7 * 64, 2, 4, 6)
    assert torch.all(act[3 * 64 : 4 * 64, 0] == 1) and torch.all(act[3 * 64 : 4 * 64, 1] == 0)  # W column
    assert not torch.allclose(act[:192, 0], act[:192, 1])  # the turn rotates the rays


def test_keyboard_camera_moves_along_yaw():
    cam = KeyboardCamera()
    w, still = torch.tensor([[1.0, 0, 0, 0]]), torch.zeros(1, 4)
    zero, one = torch.zeros(1), torch.ones(1)
    for _ in range(10):
        cam.advance(w, zero, zero)
    assert torch.allclose(cam.position[0], torch.tensor([0, 0, 0.5], dtype=torch.float64))
    cam.reset()
    for _ in range(45):  # 90 degrees right
        cam.advance(still, one, zero)
    cam.advance(w, zero, zero)
    assert cam.position[0, 0].item() == pytest.approx(0.05) and abs(cam.position[0, 2].item()) < 1e-9  # forward = +x
    for _ in range(100):
        cam.advance(still, zero, one)
    assert cam.pitch.item() == 85.0
    # Looking up rotates the forward axis towards -y (up in OpenCV).
    assert cam.pose()[0, 1, 2].item() == pytest.approx(-math.sin(math.radians(85)))


def test_keyboard_camera_rows_are_independent_and_match_one_camera_each():
    """A batch of cameras integrates each row as a camera of its own would (rows advanced or reset alone too)."""
    torch.manual_seed(0)
    batch, single = (
        KeyboardCamera(max_pitch_deg=10.0, batch_size=3),
        [KeyboardCamera(max_pitch_deg=10.0) for _ in range(3)],
    )
    for t in range(6):
        rows = [0, 2] if t % 2 else [0, 1, 2]
        acts = torch.rand(len(rows), 6) * 2 - 1
        got = batch.hold(acts, 4, rows)
        for i, r in enumerate(rows):
            assert torch.allclose(got[i], single[r].hold(acts[i : i + 1], 4)[0])
        if t == 3:
            batch.reset([1])
            single[1].reset()
    assert torch.allclose(batch.pose(), torch.cat([c.pose() for c in single]))
    assert batch.pitch.abs().max().item() <= 10.0


def test_action_control_act_and_cam():
    from world_model.control import ActionControl, ActionControlConfig

    act = ActionControl(ActionControlConfig("act", 32, 48), batch_size=2)
    a = torch.tensor([[[1, 0, 0, 0, 0.5, 0.0]], [[0, 0, 0, 1, -1.0, 1.0]]])
    m = act(a)
    assert m.shape == (2, 448, 1, 4, 6)
    assert torch.all(m[0, 192:256] == 1) and torch.all(m[1, 192:256] == 0) and torch.all(m[1, 384:448] == 1)
    ident = act.identity()
    assert torch.equal(act(torch.zeros(2, 1, 6)), ident)
    for _ in range(20):  # pitch saturates at the limit: pushing further turns nothing
        act(torch.tensor([[[0, 0, 0, 0, 0, 1.0]]] * 2))
    assert torch.equal(act(torch.tensor([[[0, 0, 0, 0, 0, 1.0]]] * 2)), ident)
    with pytest.raises(ValueError, match="actions must be"):
        act(torch.zeros(2, 6))

    cam = ActionControl(ActionControlConfig("cam", 32, 48), batch_size=1)
    fwd = cam(torch.tensor([[[1, 0, 0, 0, 0, 0.0]]]))
    assert fwd.shape == (1, 384, 1, 4, 6)
    assert torch.allclose(fwd[0, 128:192], torch.ones(64, 1, 4, 6))  # origin z: one full step forward
    assert torch.allclose(cam(torch.zeros(1, 1, 6)), cam.identity())
