"""Agents in the generated world and in the real game: the transfer task, its baselines and their evaluation.

The dependency direction is the project's: ``agents`` uses ``lingbot_env`` (both envs), ``distillation`` (the
map split, the scripted explorer) and ``world_model``; nothing imports ``agents``.
"""
