"""The transfer task: explore a Doom map, rewarded by the real game.

An episode is ``episode_steps`` env steps (latent frames: 4 video frames each) on one map of a split; the
reward is the real game's ``reward="explore"``: +1 for every ``explore_cell`` x ``explore_cell`` map cell the
player enters for the first time. Monsters are on and the player can die (that ends the episode: the
termination a learned head must predict). Training maps and held-out maps are disjoint
(:class:`distillation.data.splits.MapSplit`), so a policy is always scored on maps it never saw.

Why this task: the game computes its reward exactly from the player's position, a policy has to walk, turn
away from walls and go through doors to earn it, and a random policy (which jitters in place) and one that holds
W (which walks into the first wall) score clearly below a policy that explores (measure them with
:mod:`agents.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from distillation.data.splits import MapSplit
from lingbot_env.doom.env import ViZDoomWASDEnv
from world_model import doom


@dataclass(frozen=True)
class ExploreTask:
    """What an episode is. Frames are the world model's size (``doom.WIDTH`` x ``doom.HEIGHT``), so a policy sees
    the same observation shape in the dream and in the game."""

    wad: str = "freedoom2"
    episode_steps: int = 300  # env steps per episode (1,200 video frames, about 69 s of game time)
    explore_cell: float = 64.0  # map units per reward cell (the player is 32 units wide)
    monsters: bool = True
    skill: int = 3
    random_start: bool = True  # start at a random spawn point with a random yaw: more varied episodes per map

    def maps(self, split: str) -> tuple[str, ...]:
        """The maps of ``split`` ("train" or "val")."""
        s = MapSplit(self.wad)
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return s.train_maps if split == "train" else s.val_maps  # type: ignore[return-value]

    def real_env(self, split: str = "train", seed: int | None = None) -> gym.Env:
        """The real game on the maps of ``split`` (one drawn per episode), rewarded by exploration."""
        base = ViZDoomWASDEnv(
            wad=self.wad,
            map=self.maps(split)[0],
            frame_size=(doom.WIDTH, doom.HEIGHT),
            max_steps=self.episode_steps,
            reward="explore",
            explore_cell=self.explore_cell,
            monsters=self.monsters,
            skill=self.skill,
            random_start=self.random_start,
            labels=False,
            seed=seed,
        )
        return MapPerEpisode(base, self.maps(split))


class MapPerEpisode(gym.Wrapper):
    """Draws the map of each episode from ``maps`` with the env's own seeded generator (``reset(seed=...)``
    makes the sequence of maps reproducible); ``reset(options={"map": ...})`` still picks one explicitly."""

    def __init__(self, env: gym.Env, maps: tuple[str, ...]) -> None:
        super().__init__(env)
        if not maps:
            raise ValueError("MapPerEpisode needs at least one map")
        self.maps = tuple(maps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.env.reset(seed=seed)  # seeds np_random first, so the map draw below is reproducible
        options = dict(options or {})
        if "map" not in options:
            options["map"] = self.maps[int(self.env.unwrapped.np_random.integers(len(self.maps)))]
        return self.env.reset(options=options)
