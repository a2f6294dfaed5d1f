"""Score a policy on the transfer task in the real game: mean return with its standard error.

    python -m agents.evaluate --policy random --episodes 20 --split val --out runs/agents/random.json
    python -m agents.evaluate --policy hold_w ...
    python -m agents.evaluate --policy explorer ...          # the data engine's scripted explorer (it reads the
                                                             # map's walls: a privileged reference, not an agent)
    python -m agents.evaluate --policy runs/agents/ppo_real ...   # a trained policy folder (agents.train_ppo's --out)

Episodes are seeded ``seed, seed + 1, ...``: two policies scored with the same ``--seed`` play the same maps from
the same starts. The JSON holds every episode's return and length, the mean, its standard error and the task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.task import ExploreTask

Policy = Callable[[np.ndarray, dict[str, Any]], np.ndarray]  # (obs uint8 [H, W, 3], info) -> action float32 [6]
BUILTIN = ("random", "hold_w", "explorer")


def make_policy(name: str, action_space, seed: int, stochastic: bool = False) -> tuple[Policy, Callable[[int], None]]:
    """``(policy, reset(seed))`` for a built-in name or a saved policy folder (:mod:`agents.policy_io`).

    ``stochastic``: a saved policy samples its actions (as it did in training) instead of taking the most likely;
    its draws are seeded per episode, so a score is reproducible."""
    if name == "random":
        rng = np.random.default_rng(seed)

        def reseed(s: int) -> None:
            nonlocal rng
            rng = np.random.default_rng(s)

        lo, hi = action_space.low, action_space.high
        return (lambda obs, info: rng.uniform(lo, hi).astype(np.float32)), reseed
    if name == "hold_w":
        w = np.array([1, 0, 0, 0, 0, 0], np.float32)
        return (lambda obs, info: w), (lambda s: None)
    if name == "explorer":
        from distillation.data.policy import ExplorationPolicy

        explorer = ExplorationPolicy(seed)
        return explorer, explorer.reset
    path = Path(name)
    if not path.is_dir():
        raise ValueError(
            f"--policy must be one of {BUILTIN} or a saved policy folder (python -m agents.train_ppo --out), got "
            f"{name!r}"
            + (
                ": Stable-Baselines3 .zip files are not read (loading them unpickles code)"
                if path.suffix == ".zip"
                else ""
            )
        )
    from agents.policy_io import load_policy, read_meta
    from lingbot_env.agent_view import AgentView

    policy = load_policy(path)  # first: it names what a folder that is not a saved policy lacks
    view = AgentView.from_dict(read_meta(path).get("view"))  # the view it was trained with
    return through_view(policy, view, stochastic, seed)


def through_view(policy, view, stochastic: bool = False, seed: int = 0) -> tuple[Policy, Callable[[int], None]]:
    """``(act, reset(seed))`` for an SB3 policy (``model.policy`` or :func:`agents.policy_io.load_policy`'s) that
    reads the env's raw frames through ``view`` (an :class:`~lingbot_env.agent_view.AgentView`): ``reset`` at each
    episode's start empties the frame stack and reseeds the draws of a ``stochastic`` policy."""
    import torch

    eyes = view.reader()
    gen = torch.Generator().manual_seed(seed)

    def act(obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        obs = eyes(obs)
        if not stochastic:
            return policy.predict(obs, deterministic=True)[0]
        # SB3 samples from the global torch RNG: run it from this policy's own stream.
        with torch.random.fork_rng(devices=[]):
            torch.random.set_rng_state(gen.get_state())
            action = policy.predict(obs, deterministic=False)[0]
            gen.set_state(torch.random.get_rng_state())
        return action

    def reset(s: int) -> None:  # a new episode: a fresh frame stack, a reseeded draw
        eyes.reset()
        gen.manual_seed(s)

    act.reset = reset  # so that evaluate() resets it when it is passed as a callable
    return act, reset


def evaluate(
    policy: str | Policy,
    task: ExploreTask,
    split: str,
    episodes: int,
    seed: int = 0,
    progress: bool = True,
    stochastic: bool = False,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``task`` on ``split``'s maps with ``policy`` (a name for
    :func:`make_policy`, or a callable ``(obs, info) -> action``, whose ``reset(seed)``, where it has one, is called
    at each episode's start); returns and lengths per episode."""
    env = task.real_env(split, seed=seed)
    if isinstance(policy, str):
        name = policy
        act, reseed = make_policy(policy, env.action_space, seed, stochastic)
    else:
        name, act = getattr(policy, "__name__", type(policy).__name__), policy
        reseed = getattr(policy, "reset", lambda s: None)  # called with the episode's seed after each env reset
    returns, lengths, maps, deaths = [], [], [], 0
    t0 = time.perf_counter()
    for ep in tqdm(range(episodes), desc=f"{name} on {split}", unit="episode", disable=not progress):
        obs, info = env.reset(seed=seed + ep)
        reseed(seed + ep)
        total, n, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, info = env.step(act(obs, info))
            total, n = total + r, n + 1
            done = terminated or truncated
        deaths += int(terminated and info.get("dead", False))
        returns.append(total)
        lengths.append(n)
        maps.append(info.get("map"))
    env.close()
    mean = float(np.mean(returns))
    se = float(np.std(returns, ddof=1) / math.sqrt(len(returns))) if len(returns) > 1 else float("nan")
    return {
        "policy": name,
        "split": split,
        "episodes": episodes,
        "seed": seed,
        "stochastic": stochastic,
        "mean_return": mean,
        "stderr": se,
        "deaths": deaths,
        "returns": returns,
        "lengths": lengths,
        "maps": maps,
        "seconds": time.perf_counter() - t0,
        "task": dataclasses.asdict(task),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True, help=f"one of {BUILTIN} or a saved policy folder")
    ap.add_argument("--split", default="val", choices=("train", "val"), help="maps to play (val: held out)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--episode-steps", type=int, default=ExploreTask.episode_steps, help="env steps per episode")
    ap.add_argument("--seed", type=int, default=0, help="episode i is seeded seed + i")
    ap.add_argument(
        "--stochastic",
        action="store_true",
        help="a saved policy samples its actions, as in training (default: the most likely action; seeded either way)",
    )
    ap.add_argument("--out", help="write the result JSON here")
    args = ap.parse_args(argv)
    task = ExploreTask(episode_steps=args.episode_steps)
    res = evaluate(args.policy, task, args.split, args.episodes, args.seed, stochastic=args.stochastic)
    print(f"{args.policy}: {res['mean_return']:.1f} +- {res['stderr']:.1f} cells per episode ({args.split} maps)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
