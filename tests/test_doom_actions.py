"""The shared action definition (no ViZDoom needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lingbot_env.actions import (
    ACTION_NAMES,
    ActionSpec,
    action_to_controls,
    make_action,
    split_actions,
    validate_action,
)


def test_space_layout_and_bounds():
    space = ActionSpec().action_space()
    assert ACTION_NAMES == ("W", "A", "S", "D", "yaw", "pitch")
    assert space.shape == (6,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [0, 0, 0, 0, -1, -1])
    np.testing.assert_array_equal(space.high, [1, 1, 1, 1, 1, 1])


def test_controls_per_frame():
    spec = ActionSpec(max_yaw_deg_per_frame=3.0, max_pitch_deg_per_frame=1.5)
    c = action_to_controls([0.9, 0.2, 0.51, 0.5, 0.5, -1.0], spec)
    np.testing.assert_array_equal(c.keys, [1, 0, 1, 0])  # > 0.5 is pressed, 0.5 is not
    assert c.yaw_deg == pytest.approx(1.5) and c.pitch_deg == pytest.approx(-1.5)
    keys, yaw, pitch = split_actions(np.array([[1, 0, 0, 1, 1.0, 0.25], [0, 1, 0, 0, -0.5, 0]]), spec)
    np.testing.assert_array_equal(keys, [[1, 0, 0, 1], [0, 1, 0, 0]])
    np.testing.assert_allclose(yaw, [3.0, -1.5])
    np.testing.assert_allclose(pitch, [0.375, 0.0])


def test_out_of_range_is_clipped():
    a = validate_action([2.0, -1.0, 0.0, 0.0, 3.0, -7.0])
    np.testing.assert_array_equal(a, [1, 0, 0, 0, 1, -1])
    assert a.dtype == np.float32
    np.testing.assert_array_equal(make_action(w=True, yaw=-0.25), [1, 0, 0, 0, -0.25, 0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(5), r"shape \(6,\)"),
        (np.zeros((1, 6)), r"shape \(6,\)"),
        ([1, 0, 0, 0, float("nan"), 0], r"NaN or inf in \['yaw'\]"),
        ([1, 0, 0, float("inf"), 0, 0], r"NaN or inf in \['D'\]"),
        (["w", 0, 0, 0, 0, 0], "numeric"),
    ],
)
def test_bad_actions_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_action(bad)


def test_bad_spec():
    with pytest.raises(ValueError, match="frames_per_step"):
        ActionSpec(frames_per_step=0)
    with pytest.raises(ValueError, match="max_yaw_deg_per_frame"):
        ActionSpec(max_yaw_deg_per_frame=0.0)


def test_package_import_stays_cheap():
    code = (
        "import sys, lingbot_env, lingbot_env.actions, gymnasium as gym;"
        "assert 'ViZDoomWASD-v0' in gym.registry;"
        "print('vizdoom' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
