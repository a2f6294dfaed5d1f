"""Captions and visible objects from synthetic inputs: the exact wording, grouping, ordering and geometry."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lingbot_env.doom.labels import VisibleObject, caption, describe_place, noun, visible_objects

DARK = np.zeros((48, 64, 3), np.uint8)


def obj(name: str, category: str, side: str, distance: float) -> VisibleObject:
    return VisibleObject(name, category, 0, (0, 0, 1, 1), (0.0, 0.0, 0.0), distance, 0.0, side)


def frame_of_luma(value: int, bottom: int | None = None) -> np.ndarray:
    f = np.full((48, 64, 3), value, np.uint8)
    if bottom is not None:
        f[36:] = bottom  # the bottom quarter, where the weapon sits
    return f


def depth_of(left: float, centre: float, right: float) -> np.ndarray:
    """Depth [48, 64] with the given values in the left quarter, the centre quarter and the right quarter."""
    d = np.full((48, 64), 30, np.uint8)
    d[:, :16], d[:, 24:40], d[:, 48:] = left, centre, right
    return d


def test_caption_of_the_documented_example():
    objects = [
        obj("Medikit", "Health", "left", 100.0),
        obj("DoomImp", "Monster", "ahead", 300.0),
        obj("Medikit", "Health", "left", 150.0),
    ]
    got = caption(DARK, objects, depth_of(5, 50, 5))
    assert got == "a dark corridor, an imp ahead, two medikits on the left"


def test_caption_groups_by_kind_and_side_monsters_first_nearest_first():
    objects = [
        obj("Shotgun", "Weapon", "right", 50.0),
        obj("Zombieman", "Monster", "right", 400.0),
        obj("Zombieman", "Monster", "ahead", 200.0),
        obj("Zombieman", "Monster", "ahead", 250.0),
        obj("Zombieman", "Monster", "ahead", 260.0),
        obj("Column", "LightSource", "ahead", 10.0),  # visible but never named
        obj("TechPillar", "Decoration", "left", 5.0),
        obj("BlueCard", "Key", "left", 900.0),  # keys come right after monsters
    ]
    got = caption(DARK, objects)
    assert got == (
        "a dark area, three zombiemen ahead, a zombieman on the right, a blue keycard on the left, "
        "a shotgun on the right"
    )
    # Only max_phrases object groups, after the place phrase.
    assert caption(DARK, objects, max_phrases=2) == "a dark area, three zombiemen ahead, a zombieman on the right"
    assert caption(DARK, objects, max_phrases=0) == "a dark area"
    assert caption(DARK, []) == "a dark area"
    assert caption(DARK, objects[5:7]) == "a dark area"


def test_caption_articles_plurals_and_unknown_names():
    cases = [
        ([obj("Archvile", "Monster", "left", 1.0)], "an arch-vile on the left"),
        ([obj("ArmorBonus", "Armor", "ahead", 1.0)] * 2, "two armor bonuses ahead"),
        ([obj("ShellBox", "Ammo", "right", 1.0)] * 3, "three boxes of shells on the right"),
        ([obj("Fatso", "Monster", "ahead", 1.0)] * 2, "two mancubi ahead"),
        ([obj("DoomImp", "Monster", "ahead", 1.0)] * 10, "many imps ahead"),
        ([obj("EvilEye", "Hazard", "ahead", 1.0)], "an evil eye ahead"),  # not in the noun table: de-CamelCased
        ([obj("GlassBox", "Ammo", "left", 1.0)] * 2, "two glass boxes on the left"),
    ]
    for objects, phrase in cases:
        assert caption(DARK, objects) == f"a dark area, {phrase}"
    assert noun("Medikit") == "a medikit" and noun("Medikit", 9) == "nine medikits"
    assert noun("BFG9000", 2) == "two BFGs" and noun("BFG9000") == "a BFG"


def test_place_phrase_brightness_and_depth_layout():
    # Brightness: mean luma of the upper 3/4; the bottom quarter (the weapon) does not count.
    assert describe_place(frame_of_luma(39)) == "a dark area"
    assert describe_place(frame_of_luma(40)) == "a dim area"
    assert describe_place(frame_of_luma(79)) == "a dim area"
    assert describe_place(frame_of_luma(80)) == "a bright area"
    assert describe_place(frame_of_luma(10, bottom=255)) == "a dark area"
    green = np.zeros((48, 64, 3), np.uint8)
    green[..., 1] = 100  # luma 0.587 * 100 = 58.7
    assert describe_place(green) == "a dim area"
    bright = frame_of_luma(200)
    assert describe_place(bright, depth_of(30, 5, 30)) == "a bright room, facing a wall"
    assert describe_place(bright, depth_of(8, 21, 10)) == "a bright corridor"
    assert describe_place(bright, depth_of(8, 20, 10)) == "a bright room"  # centre not over twice the sides
    assert describe_place(bright, depth_of(12, 40, 5)) == "a bright room"  # one side not close
    assert describe_place(bright, depth_of(50, 60, 45)) == "a bright open area"
    assert describe_place(bright, depth_of(30, 30, 30)) == "a bright room"
    assert caption(bright, [obj("Stimpack", "Health", "right", 3.0)], depth_of(50, 60, 45)) == (
        "a bright open area, a stimpack on the right"
    )


def label(name, category, x, y, w, h, px, py, pz=0.0, object_id=1):
    return SimpleNamespace(
        object_name=name,
        object_category=category,
        object_id=object_id,
        x=x,
        y=y,
        width=w,
        height=h,
        object_position_x=px,
        object_position_y=py,
        object_position_z=pz,
    )


def test_visible_objects_from_labels():
    # Player at (0, 0, 0) facing north (yaw 90). Render 160x120, frames returned at 80x60.
    pose = np.array([0, 0, 0, 90, 0], np.float32)
    labels = [
        label("DoomImp", "Monster", 120, 40, 20, 30, 300, 300, object_id=7),  # north-east: to the right
        label("Medikit", "Health", 10, 80, 16, 8, -40, 30, pz=0.0, object_id=8),  # north-west: to the left
        label("DoomPlayer", "Player", 0, 0, 160, 120, 0, 0),  # not something a viewer names
        label("Shotgun", "Weapon", 70, 60, 20, 10, 0, 120, pz=50.0, object_id=9),  # straight ahead
    ]
    objs = visible_objects(labels, pose, (160, 120), (80, 60))
    assert [o.name for o in objs] == ["Medikit", "Shotgun", "DoomImp"]  # nearest first
    medikit, shotgun, imp = objs
    assert medikit.side == "left" and medikit.bearing_deg == pytest.approx(90 - np.degrees(np.arctan2(30, -40)))
    assert medikit.bearing_deg < 0 and medikit.distance == pytest.approx(50.0)
    assert shotgun.side == "ahead" and shotgun.bearing_deg == pytest.approx(0.0)
    assert shotgun.distance == pytest.approx(130.0)  # 3D: hypot(120, 50)
    assert imp.side == "right" and imp.bearing_deg == pytest.approx(45.0) and imp.category == "Monster"
    assert imp.box == (60, 20, 10, 15) and imp.object_id == 7 and imp.position == (300.0, 300.0, 0.0)
    assert imp.to_dict()["box"] == [60, 20, 10, 15] and imp.to_dict()["side"] == "right"
    assert visible_objects(None, pose, (160, 120), (80, 60)) == []
    assert caption(DARK, objs) == "a dark area, an imp on the right, a shotgun ahead, a medikit on the left"
