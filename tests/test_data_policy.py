"""Exploration policy and map split, without running the game (synthetic observations)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from distillation.data.policy import ExplorationPolicy, ExplorerConfig, free_distance, load_policy
from distillation.data.splits import MapSplit

OBS = np.zeros((48, 64, 3), np.uint8)


def _info(x: float, y: float, yaw: float = 0.0, pitch: float = 0.0) -> dict:
    # No "wad"/"map": the policy runs without wall geometry here.
    return {"pose": np.array([x, y, 0.0, yaw, pitch], np.float32)}


def _walk(policy: ExplorationPolicy, steps: int, moving: bool = True) -> list[np.ndarray]:
    """Drive the policy with a fake world where W moves 60 units along the yaw (or nothing moves)."""
    x = y = yaw = pitch = 0.0
    out = []
    for _ in range(steps):
        a = policy(OBS, _info(x, y, yaw, pitch))
        out.append(a)
        yaw = (yaw - a[4] * 8.0) % 360.0
        pitch = float(np.clip(pitch + a[5] * 8.0, -32, 56))
        if moving:
            fwd = float(a[0] > 0.5) - float(a[2] > 0.5)
            x += 60.0 * fwd * np.cos(np.radians(yaw))
            y += 60.0 * fwd * np.sin(np.radians(yaw))
    return out


def test_deterministic_for_a_seed_and_valid():
    a = np.array(_walk(ExplorationPolicy(seed=5), 300))
    b = np.array(_walk(ExplorationPolicy(seed=5), 300))
    c = np.array(_walk(ExplorationPolicy(seed=6), 300))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (300, 6)
    assert np.isfinite(a).all() and (a[:, :4] >= 0).all() and (a[:, :4] <= 1).all()
    assert (np.abs(a[:, 4:]) <= 1).all()
    p = ExplorationPolicy(seed=5)
    _walk(p, 50)
    p.reset(5)  # reset() restarts the same stream
    np.testing.assert_array_equal(np.array(_walk(p, 300)), a)


def test_behaviour_mix_is_varied():
    acts = np.array(_walk(ExplorationPolicy(seed=0), 2000))
    keys = acts[:, :4] > 0.5
    combos = Counter("".join("WASD"[i] for i in range(4) if k[i]) or "-" for k in keys)
    assert combos["W"] > 300  # mostly walking forward
    assert sum(v for k, v in combos.items() if "A" in k or "D" in k) > 30  # strafes
    assert sum(v for k, v in combos.items() if "S" in k) > 5  # back-offs
    assert combos["-"] > 30  # pauses / turning on the spot
    yaw = np.abs(acts[:, 4])
    assert (yaw > 0.7).sum() > 50 and ((yaw > 0.1) & (yaw < 0.5)).sum() > 50  # fast and slow turns
    assert (acts[:, 5] > 0.2).sum() > 5 and (acts[:, 5] < -0.2).sum() > 5  # looks up and down


def test_stuck_player_backs_off():
    acts = _walk(ExplorationPolicy(seed=1, config=ExplorerConfig(weights={"travel": 1.0})), 40, moving=False)
    # Only "travel" is allowed, so S can only come from the stuck detector.
    assert any(a[2] > 0.5 for a in acts)


def test_free_distance_against_a_square_room():
    room = np.array([[0, 0, 100, 0], [100, 0, 100, 100], [100, 100, 0, 100], [0, 100, 0, 0]], np.float32)
    d = free_distance(room, np.array([25.0, 50.0]), np.array([0.0, 90.0, 180.0, 270.0, 45.0]))
    np.testing.assert_allclose(d, [75, 50, 25, 50, 50 * np.sqrt(2)], rtol=1e-5)


def test_policy_plugin_and_errors():
    p = load_policy("distillation.data.policy:RandomPolicy", seed=3)
    assert p(OBS, _info(0, 0)).shape == (6,)
    with pytest.raises(ValueError, match="unknown policy 'bogus'"):
        load_policy("bogus", 0)
    with pytest.raises(ValueError, match="unknown explorer behaviours"):
        ExplorerConfig(weights={"dance": 1.0})


def test_map_split_is_disjoint_and_validated():
    s = MapSplit("freedoom2")
    assert set(s.maps("train")).isdisjoint(s.maps("val"))
    assert len(s.maps("train")) + len(s.maps("val")) == 32
    assert s.maps("val") == ("MAP05", "MAP13", "MAP21", "MAP29")
    with pytest.raises(ValueError, match="both the train and the val split"):
        MapSplit("freedoom2", val_maps=("MAP01",), train_maps=("MAP01", "MAP02"))
    with pytest.raises(ValueError, match="unknown map 'MAP40'"):
        MapSplit("freedoom2", val_maps=("MAP40",))
    with pytest.raises(ValueError, match="unknown split"):
        s.maps("test")
