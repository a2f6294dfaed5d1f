"""Train/validation split by map: validation maps never appear in training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lingbot_env.doom.wad import check_map, list_maps, resolve_wad

SPLITS: tuple[str, ...] = ("train", "val")

# Held-out maps: spread over each WAD so validation covers early, middle and late level styles.
DEFAULT_VAL_MAPS: dict[str, tuple[str, ...]] = {
    "freedoom2": ("MAP05", "MAP13", "MAP21", "MAP29"),
    "freedoom1": ("E1M5", "E2M5", "E3M5", "E4M5"),
}


@dataclass(frozen=True)
class MapSplit:
    """Which maps of ``wad`` feed training and which validation (disjoint).

    Args:
        wad: WAD name or path (see :func:`lingbot_env.doom.wad.resolve_wad`).
        val_maps: held-out maps; ``None`` = :data:`DEFAULT_VAL_MAPS` for the WAD.
        train_maps: training maps; ``None`` = every other map of the WAD.
    """

    wad: str = "freedoom2"
    val_maps: tuple[str, ...] | None = None
    train_maps: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        path = resolve_wad(self.wad)
        key = self.wad.lower().removesuffix(".wad")
        val = self.val_maps if self.val_maps is not None else DEFAULT_VAL_MAPS.get(key)
        if val is None:
            raise ValueError(f"no default validation maps for WAD {self.wad!r}; pass val_maps explicitly")
        val = tuple(check_map(path, m) for m in val)
        if self.train_maps is None:
            train = tuple(m for m in list_maps(path) if m not in val)
        else:
            train = tuple(check_map(path, m) for m in self.train_maps)
        overlap = sorted(set(train) & set(val))
        if overlap:
            raise ValueError(f"maps {overlap} are in both the train and the val split; a map split must be disjoint")
        if not train or not val:
            raise ValueError(f"both splits need at least one map (train={list(train)}, val={list(val)})")
        object.__setattr__(self, "val_maps", val)
        object.__setattr__(self, "train_maps", train)

    def maps(self, split: str) -> tuple[str, ...]:
        if split == "train":
            return self.train_maps  # type: ignore[return-value]
        if split == "val":
            return self.val_maps  # type: ignore[return-value]
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"wad": self.wad, "train_maps": list(self.train_maps or ()), "val_maps": list(self.val_maps or ())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MapSplit:
        return cls(wad=d["wad"], val_maps=tuple(d["val_maps"]), train_maps=tuple(d["train_maps"]))
