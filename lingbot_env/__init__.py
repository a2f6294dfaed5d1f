"""Gymnasium environments of lingbot-realtime. Importing this package stays cheap: entry points are strings."""

from gymnasium.envs.registration import register, registry

# --- ViZDoomWASD-v0: the real game (issue 6) -------------------------------------------------------
# Lazy entry point: vizdoom is imported only when the env is made and reset.
if "ViZDoomWASD-v0" not in registry:
    register(id="ViZDoomWASD-v0", entry_point="lingbot_env.doom.env:ViZDoomWASDEnv")
# --- end ViZDoomWASD-v0 -----------------------------------------------------------------------------

# --- LingBotWorld-v0: the generated world (issue 7) -------------------------------------------------
# Lazy entry points: torch and the model load only when the env is made.
if "LingBotWorld-v0" not in registry:
    register(
        id="LingBotWorld-v0",
        entry_point="lingbot_env.world_env:LingBotWorldEnv",
        vector_entry_point="lingbot_env.vector_env:LingBotWorldVectorEnv",
    )
# --- end LingBotWorld-v0 ----------------------------------------------------------------------------
