"""The real game (ViZDoom + Freedoom) behind the shared WASD + camera action interface.

Importing this package does not start or import ViZDoom; :class:`ViZDoomWASDEnv` does at its first reset.
"""

from lingbot_env.doom.env import ViZDoomWASDEnv
from lingbot_env.doom.game import SUPPORTED_RESOLUTIONS, DoomConfig
from lingbot_env.doom.wad import list_maps, resolve_wad

__all__ = ["SUPPORTED_RESOLUTIONS", "DoomConfig", "ViZDoomWASDEnv", "list_maps", "resolve_wad"]
