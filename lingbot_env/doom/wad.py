"""Reading Doom WAD files directly (no ViZDoom needed): map names, THINGS and the line geometry.

Used to validate map names with a clear error before the engine starts, to pick random spawn points,
and to draw map outlines in data reports. Only the classic Doom map format is read (Freedoom uses it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import struct

import numpy as np

BUILTIN_WADS: tuple[str, ...] = ("freedoom1", "freedoom2")

# Doom thing types whose positions are good random spawn points: player and deathmatch starts, and
# pickups (weapons, ammo, health, armor, powerups, keys). Pickups are non-solid and placed where a
# player can stand; monsters and decorations are not (closets, solid props).
_SPAWN_THING_TYPES = frozenset([1, 2, 3, 4, 11, 5, 6, 8, 13, 17, 38, 39, 40, 82, 83] + list(range(2001, 2050)))


def vizdoom_dir() -> str:
    """The installed vizdoom package folder, found without importing (and starting) it."""
    spec = importlib.util.find_spec("vizdoom")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'vizdoom' package is not installed (pip install vizdoom)")
    return list(spec.submodule_search_locations)[0]


@functools.lru_cache(maxsize=32)
def resolve_wad(wad: str) -> str:
    """``"freedoom1"`` / ``"freedoom2"`` (shipped with vizdoom) or a path to a ``.wad`` -> absolute path."""
    name = wad[:-4] if wad.lower().endswith(".wad") else wad
    if name.lower() in BUILTIN_WADS and os.path.sep not in wad:
        path = os.path.join(vizdoom_dir(), name.lower() + ".wad")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"WAD {wad!r} is not in the installed vizdoom package ({path} missing; a slimmed wheel "
                "may ship only one of freedoom1/freedoom2)"
            )
        return path
    if os.path.isfile(wad):
        return os.path.abspath(wad)
    raise ValueError(f"unknown WAD {wad!r}: use one of {list(BUILTIN_WADS)} or a path to an existing .wad file")


def wad_name(wad_path: str) -> str:
    """Short WAD name used in data (``"freedoom2"``)."""
    return os.path.splitext(os.path.basename(wad_path))[0]


_MAP_RE = re.compile(r"MAP\d\d|E\dM\d")


@functools.lru_cache(maxsize=16)
def _wad_directory(wad_path: str) -> tuple[tuple[str, int, int], ...]:
    """(lump name, file offset, size) for every lump of a WAD file."""
    with open(wad_path, "rb") as f:
        ident, num, offset = struct.unpack("<4sii", f.read(12))
        if ident not in (b"IWAD", b"PWAD"):
            raise ValueError(f"{wad_path} is not a WAD file (header {ident!r})")
        f.seek(offset)
        raw = f.read(16 * num)
    out = []
    for i in range(num):
        pos, size, name = struct.unpack_from("<ii8s", raw, 16 * i)
        out.append((name.rstrip(b"\0").decode("ascii", "replace").upper(), pos, size))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def list_maps(wad_path: str) -> tuple[str, ...]:
    """Map names (``MAPxx`` / ``ExMy``) contained in a WAD, in file order."""
    return tuple(name for name, _, _ in _wad_directory(wad_path) if _MAP_RE.fullmatch(name))


def check_map(wad_path: str, map_name: str) -> str:
    """Upper-cased map name if the WAD has it, else ``ValueError`` listing the maps it has."""
    name = str(map_name).strip().upper()
    maps = list_maps(wad_path)
    if name not in maps:
        raise ValueError(f"unknown map {map_name!r} for WAD {wad_name(wad_path)}: available maps are {', '.join(maps)}")
    return name


_THING_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("angle", "<i2"), ("type", "<i2"), ("flags", "<i2")])


@functools.lru_cache(maxsize=128)
def read_things(wad_path: str, map_name: str) -> np.ndarray:
    """The map's THINGS lump as a structured array with fields x, y, angle, type, flags."""
    return np.frombuffer(_lump_after_map(wad_path, map_name, "THINGS"), dtype=_THING_DTYPE).copy()


def spawn_points(wad_path: str, map_name: str) -> np.ndarray:
    """float32 [K, 2]: (x, y) positions of player starts, deathmatch starts and pickups of a map."""
    things = read_things(wad_path, map_name)
    keep = np.isin(things["type"], list(_SPAWN_THING_TYPES))
    return np.stack([things["x"][keep], things["y"][keep]], axis=1).astype(np.float32)


def _lump_after_map(wad_path: str, map_name: str, lump_name: str) -> bytes:
    directory = _wad_directory(wad_path)
    name = check_map(wad_path, map_name)
    idx = next(i for i, (n, _, _) in enumerate(directory) if n == name)
    # A classic map is its marker lump followed by THINGS, LINEDEFS, SIDEDEFS, VERTEXES, ... (<= 11).
    for lump, pos, size in directory[idx + 1 : idx + 12]:
        if lump == lump_name:
            with open(wad_path, "rb") as f:
                f.seek(pos)
                return f.read(size)
    raise ValueError(f"{name} in {wad_path} has no classic-format {lump_name} lump")


@functools.lru_cache(maxsize=64)
def map_lines(wad_path: str, map_name: str) -> np.ndarray:
    """float32 [L, 4]: (x1, y1, x2, y2) of every line (wall or step edge) of a map, for drawing."""
    verts = np.frombuffer(_lump_after_map(wad_path, map_name, "VERTEXES"), dtype="<i2").reshape(-1, 2)
    lines = np.frombuffer(_lump_after_map(wad_path, map_name, "LINEDEFS"), dtype="<u2").reshape(-1, 7)
    return np.concatenate([verts[lines[:, 0]], verts[lines[:, 1]]], axis=1).astype(np.float32)


# Line specials of key-locked doors: passable only with a key, so they count as walls for navigation.
_LOCKED_DOOR_SPECIALS = frozenset([26, 27, 28, 32, 33, 34, 99, 133, 134, 135, 136, 137])
_DOOR_SPECIALS = frozenset([1, 31, 46, 63, 114, 115, 116, 117, 118, 61, 103, 109, 111, 29, 50, 42, 86, 90, 105, 106])
_SIDEDEF = np.dtype([("xo", "<i2"), ("yo", "<i2"), ("up", "S8"), ("lo", "S8"), ("mid", "S8"), ("sector", "<i2")])
_SECTOR = np.dtype(
    [("floor", "<i2"), ("ceil", "<i2"), ("ftex", "S8"), ("ctex", "S8"), ("light", "<i2"), ("sp", "<i2"), ("tag", "<i2")]
)


@functools.lru_cache(maxsize=64)
def map_walls(wad_path: str, map_name: str) -> np.ndarray:
    """float32 [L, 4]: (x1, y1, x2, y2) of the lines a walking player cannot cross.

    Blocking: one-sided lines, lines flagged impassable, locked doors, and two-sided lines whose step
    up is above 24 units or whose opening is lower than the player (56). Unlocked doors count as open
    (the env's auto-use opens them); lifts and moving floors are judged by their start heights.
    """
    verts = np.frombuffer(_lump_after_map(wad_path, map_name, "VERTEXES"), dtype="<i2").reshape(-1, 2)
    lines = np.frombuffer(_lump_after_map(wad_path, map_name, "LINEDEFS"), dtype="<u2").reshape(-1, 7)
    sides = np.frombuffer(_lump_after_map(wad_path, map_name, "SIDEDEFS"), dtype=_SIDEDEF)
    sectors = np.frombuffer(_lump_after_map(wad_path, map_name, "SECTORS"), dtype=_SECTOR)
    flags, special, right, left = lines[:, 2], lines[:, 3], lines[:, 5], lines[:, 6]
    one_sided = left == 0xFFFF
    blocking = one_sided | (flags & 1).astype(bool) | np.isin(special, list(_LOCKED_DOOR_SPECIALS))
    two = ~one_sided
    front = sectors[sides["sector"][right[two]]]
    back = sectors[sides["sector"][left[two]]]
    f_floor, b_floor = front["floor"].astype(np.int32), back["floor"].astype(np.int32)
    gap = np.minimum(front["ceil"], back["ceil"]).astype(np.int32) - np.maximum(f_floor, b_floor)
    is_door = np.isin(special[two], list(_DOOR_SPECIALS))
    blocking[two] |= ~is_door & ((np.abs(f_floor - b_floor) > 24) | (gap < 56))
    seg = np.concatenate([verts[lines[:, 0]], verts[lines[:, 1]]], axis=1).astype(np.float32)
    return seg[blocking]
