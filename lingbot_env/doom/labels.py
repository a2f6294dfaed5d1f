"""Visible objects (from ViZDoom's labels buffer) and short text captions built from the game state.

Captions look like ``"a dark corridor, an imp ahead, two medikits on the left"``: a place phrase from
the frame's brightness and (if a depth buffer is on) the depth layout, then up to ``max_phrases``
groups of visible monsters and pickups, nearest first, monsters before items.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

# Categories worth reporting as "visible objects"; the rest (the player itself, map spots, sound
# sources, internal tokens, light emitters, particles) are not things a viewer would name.
VISIBLE_CATEGORIES = frozenset(
    [
        "Monster",
        "Health",
        "Armor",
        "Ammo",
        "Weapon",
        "Key",
        "Powerup",
        "Artifact",
        "Hazard",
        "Decoration",
        "Vegetation",
        "LightSource",
        "Explosive",
        "InteractiveObject",
        "Breakable",
    ]
)
# Categories named in captions, in this priority order.
CAPTION_CATEGORIES: tuple[str, ...] = (
    "Monster",
    "Key",
    "Weapon",
    "Powerup",
    "Artifact",
    "Health",
    "Armor",
    "Ammo",
    "Hazard",
    "Explosive",
)

# Actor class -> (singular, plural). Anything missing is de-CamelCased.
_NOUNS: dict[str, tuple[str, str]] = {
    "Zombieman": ("zombieman", "zombiemen"),
    "ShotgunGuy": ("shotgun guy", "shotgun guys"),
    "ChaingunGuy": ("chaingunner", "chaingunners"),
    "DoomImp": ("imp", "imps"),
    "Demon": ("demon", "demons"),
    "Spectre": ("spectre", "spectres"),
    "LostSoul": ("lost soul", "lost souls"),
    "Cacodemon": ("cacodemon", "cacodemons"),
    "HellKnight": ("hell knight", "hell knights"),
    "BaronOfHell": ("baron of hell", "barons of hell"),
    "Arachnotron": ("arachnotron", "arachnotrons"),
    "PainElemental": ("pain elemental", "pain elementals"),
    "Revenant": ("revenant", "revenants"),
    "Fatso": ("mancubus", "mancubi"),
    "Archvile": ("arch-vile", "arch-viles"),
    "Cyberdemon": ("cyberdemon", "cyberdemons"),
    "SpiderMastermind": ("spider mastermind", "spider masterminds"),
    "WolfensteinSS": ("SS guard", "SS guards"),
    "Stimpack": ("stimpack", "stimpacks"),
    "Medikit": ("medikit", "medikits"),
    "HealthBonus": ("health bonus", "health bonuses"),
    "ArmorBonus": ("armor bonus", "armor bonuses"),
    "GreenArmor": ("green armor", "green armors"),
    "BlueArmor": ("blue armor", "blue armors"),
    "Soulsphere": ("soulsphere", "soulspheres"),
    "Megasphere": ("megasphere", "megaspheres"),
    "InvulnerabilitySphere": ("invulnerability sphere", "invulnerability spheres"),
    "BlurSphere": ("blur sphere", "blur spheres"),
    "Berserk": ("berserk pack", "berserk packs"),
    "RadSuit": ("radiation suit", "radiation suits"),
    "Infrared": ("light visor", "light visors"),
    "Allmap": ("computer map", "computer maps"),
    "Backpack": ("backpack", "backpacks"),
    "Clip": ("ammo clip", "ammo clips"),
    "ClipBox": ("box of bullets", "boxes of bullets"),
    "Shell": ("pile of shells", "piles of shells"),
    "ShellBox": ("box of shells", "boxes of shells"),
    "RocketAmmo": ("rocket", "rockets"),
    "RocketBox": ("box of rockets", "boxes of rockets"),
    "Cell": ("energy cell", "energy cells"),
    "CellPack": ("energy cell pack", "energy cell packs"),
    "SuperShotgun": ("super shotgun", "super shotguns"),
    "RocketLauncher": ("rocket launcher", "rocket launchers"),
    "PlasmaRifle": ("plasma rifle", "plasma rifles"),
    "BFG9000": ("BFG", "BFGs"),
    "BlueCard": ("blue keycard", "blue keycards"),
    "RedCard": ("red keycard", "red keycards"),
    "YellowCard": ("yellow keycard", "yellow keycards"),
    "BlueSkull": ("blue skull key", "blue skull keys"),
    "RedSkull": ("red skull key", "red skull keys"),
    "YellowSkull": ("yellow skull key", "yellow skull keys"),
    "ExplosiveBarrel": ("barrel", "barrels"),
}
_COUNTS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def noun(name: str, count: int = 1) -> str:
    """Actor class name -> noun phrase with a count word: ``("DoomImp", 2) -> "two imps"``."""
    if name in _NOUNS:
        singular, plural = _NOUNS[name]
    else:
        singular = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()
        plural = singular + ("es" if singular.endswith(("s", "x", "ch", "sh")) else "s")
    if count == 1:
        article = "an" if singular[:1].lower() in "aeiou" else "a"
        return f"{article} {singular}"
    return f"{_COUNTS[count] if count < len(_COUNTS) else 'many'} {plural}"


@dataclass(frozen=True)
class VisibleObject:
    """One object on screen (a ViZDoom label).

    name: actor class (``"DoomImp"``); category: ViZDoom category (``"Monster"``); object_id: engine id.
    box: (x, y, w, h) in pixels of the returned frame. position: world (x, y, z).
    distance: map units from the player. bearing_deg: horizontal angle from the view direction,
    > 0 = right. side: ``"left"``, ``"ahead"`` or ``"right"`` (from the box centre's screen third).
    """

    name: str
    category: str
    object_id: int
    box: tuple[int, int, int, int]
    position: tuple[float, float, float]
    distance: float
    bearing_deg: float
    side: str

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and is slow enough to show up per step.
        return {
            "name": self.name,
            "category": self.category,
            "object_id": self.object_id,
            "box": list(self.box),
            "position": list(self.position),
            "distance": self.distance,
            "bearing_deg": self.bearing_deg,
            "side": self.side,
        }


def visible_objects(
    labels: Any,
    pose: np.ndarray,
    render_size: tuple[int, int],
    frame_size: tuple[int, int],
) -> list[VisibleObject]:
    """ViZDoom labels -> visible objects of :data:`VISIBLE_CATEGORIES`, nearest first.

    Args:
        labels: ``state.labels`` (list of ``vizdoom.Label``) or ``None``.
        pose: float [5] player pose (x, y, z, yaw, pitch).
        render_size: (W, H) ViZDoom rendered at. frame_size: (W, H) of returned frames (boxes scaled).
    """
    if not labels:
        return []
    sx, sy = frame_size[0] / render_size[0], frame_size[1] / render_size[1]
    px, py, pz, yaw = (float(v) for v in pose[:4])
    out = []
    for lb in labels:
        if lb.object_category not in VISIBLE_CATEGORIES:
            continue
        dx, dy = lb.object_position_x - px, lb.object_position_y - py
        # Doom angles grow counter-clockwise, so an object to the right has a smaller angle.
        bearing = (yaw - math.degrees(math.atan2(dy, dx)) + 180.0) % 360.0 - 180.0
        cx = (lb.x + lb.width / 2) / render_size[0]
        side = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "ahead"
        out.append(
            VisibleObject(
                name=str(lb.object_name),
                category=str(lb.object_category),
                object_id=int(lb.object_id),
                box=(round(lb.x * sx), round(lb.y * sy), round(lb.width * sx), round(lb.height * sy)),
                position=(float(lb.object_position_x), float(lb.object_position_y), float(lb.object_position_z)),
                distance=float(math.hypot(dx, dy, lb.object_position_z - pz)),
                bearing_deg=float(bearing),
                side=side,
            )
        )
    out.sort(key=lambda o: o.distance)
    return out


def describe_place(frame: np.ndarray, depth: np.ndarray | None = None) -> str:
    """A place phrase such as ``"a dark corridor"`` from a frame uint8 [H, W, 3] and optional depth [H, W].

    Brightness is the mean luma of the upper 3/4 of the frame (the weapon sits at the bottom).
    With depth (ViZDoom units, about 7 map units each): close centre -> "facing a wall",
    close sides and far centre -> "corridor", everything far -> "open area", otherwise "room".
    """
    h = frame.shape[0]
    view = frame[: max(1, (3 * h) // 4)].astype(np.float32)
    luma = float((0.299 * view[..., 0] + 0.587 * view[..., 1] + 0.114 * view[..., 2]).mean())
    light = "dark" if luma < 40 else "dim" if luma < 80 else "bright"
    if depth is None:
        return f"a {light} area"
    d = depth.astype(np.float32)
    dh, dw = d.shape
    band = d[dh // 3 : (2 * dh) // 3]
    left = float(np.median(band[:, : dw // 4]))
    centre = float(np.median(band[:, (3 * dw) // 8 : (5 * dw) // 8]))
    right = float(np.median(band[:, (3 * dw) // 4 :]))
    if centre < 8:
        return f"a {light} room, facing a wall"
    if left < 12 and right < 12 and centre > 2 * max(left, right):
        return f"a {light} corridor"
    if min(left, centre, right) > 40:
        return f"a {light} open area"
    return f"a {light} room"


def caption(
    frame: np.ndarray,
    objects: list[VisibleObject],
    depth: np.ndarray | None = None,
    max_phrases: int = 4,
) -> str:
    """Caption of one frame: place phrase, then visible monsters/pickups grouped by kind and side."""
    groups: OrderedDict[tuple[str, str], int] = OrderedDict()
    priority = {c: i for i, c in enumerate(CAPTION_CATEGORIES)}
    named = [o for o in objects if o.category in priority]
    named.sort(key=lambda o: (priority[o.category], o.distance))
    for o in named:
        groups[(o.name, o.side)] = groups.get((o.name, o.side), 0) + 1
    phrases = [describe_place(frame, depth)]
    for (name, side), count in list(groups.items())[:max_phrases]:
        where = "ahead" if side == "ahead" else f"on the {side}"
        phrases.append(f"{noun(name, count)} {where}")
    return ", ".join(phrases)
