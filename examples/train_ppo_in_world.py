"""Train PPO (Stable-Baselines3, ``CnnPolicy``) inside the generated world, on one env or on a batched vector env.

Usage::

    python examples/train_ppo_in_world.py --tiny                      # tiny random world, CPU, about a minute
    python examples/train_ppo_in_world.py --tiny --num-envs 8         # 8 worlds stepped by one model call (~30 s)
    python examples/train_ppo_in_world.py --tiny --num-envs 2 --n-steps 8 --timesteps 16   # smoke test, seconds
    python examples/train_ppo_in_world.py --model <preset|folder> --image start.png --device cuda --dtype bf16 \\
        --num-envs 16 --timesteps 200000 --out runs/ppo_world

``--num-envs 1`` uses ``gym.make("LingBotWorld-v0")``; more uses ``gym.make_vec(..., vectorization_mode=
"vector_entry_point")`` (one ``InteractiveWorld`` with ``batch_size=N``) through
:class:`lingbot_env.wrappers.SB3VecEnv`.

Rewards (``--reward``): ``forward`` pays the distance walked along the view direction during the step (from the
integrated camera pose in ``info["poses"]``; the policy should learn to hold W), ``brightness`` pays the mean
brightness of the generated frame (learned from pixels only). ``--tiny`` builds a randomly initialised 48x64 world:
its frames are not meaningful, but every part of the pipeline (generation, decoding, CNN policy, PPO) runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)


def tiny_random_world(batch_size: int = 1, height: int = 48, width: int = 64, seed: int = 0):
    """A complete InteractiveWorld of tiny random parts (DiT, VAE encoder, light decoder, text encoder), with a
    gradient start image shipped as ``world.start_image`` like a real model bundle does."""
    from world_model.tiny import tiny_world

    return tiny_world(batch_size, height, width, seed=seed, start_image=True, default_prompt="a random world")


def forward_reward(obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> float:
    """Distance walked along the view direction during the step, in the official mapping's units per frame."""
    poses = info["poses"]  # [F, 4, 4] camera-to-world
    moved = poses[-1, :3, 3] - poses[0, :3, 3]
    return float(moved @ poses[0, :3, 2]) / 0.05 / max(len(poses) - 1, 1)


def brightness_reward(obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> float:
    return float(obs.mean() / 255.0)


REWARDS = {"forward": forward_reward, "brightness": brightness_reward}


def make_env(args: argparse.Namespace) -> Any:
    """An SB3-ready env: a single Gymnasium env, or the batched vector env behind :class:`SB3VecEnv`."""
    from stable_baselines3.common.vec_env import VecMonitor

    from lingbot_env.wrappers import SB3VecEnv

    kwargs: dict[str, Any] = dict(
        model=tiny_random_world if args.tiny else args.model,
        reward_fn=REWARDS[args.reward],
        max_episode_steps=args.episode_steps,
        action_clip="clip",  # PPO's Gaussian actions are clipped to the Box by SB3 already
    )
    if not args.tiny:
        kwargs.update(device=args.device, dtype=args.dtype)
    if args.image:
        kwargs["image"] = args.image
    if args.prompt:
        kwargs["prompt"] = args.prompt
    if args.num_envs == 1:
        return gym.make("LingBotWorld-v0", **kwargs)
    vector = gym.make_vec(
        "LingBotWorld-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point", seed=args.seed, **kwargs
    )
    return VecMonitor(SB3VecEnv(vector))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a tiny randomly initialised world (CPU, fast)")
    p.add_argument("--model", default=None, help="preset name or model folder (default: the small Doom model)")
    p.add_argument("--image", default=None, help="start image (default: the model's start frame)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--num-envs", type=int, default=1, help="1: single env; N > 1: one batched world of N rows")
    p.add_argument(
        "--timesteps", type=int, default=None, help="env steps in total (default: tiny 1024 x min(N, 4), else 1e5)"
    )
    p.add_argument(
        "--n-steps", type=int, default=None, help="PPO rollout length per env (default: tiny 256 / N (>= 16), else 128)"
    )
    p.add_argument("--episode-steps", type=int, default=64, help="truncate episodes after this many steps")
    p.add_argument("--reward", choices=sorted(REWARDS), default="forward")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --tiny)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default=None, help="save the trained policy in this folder (safetensors + JSON: agents.policy_io)"
    )
    args = p.parse_args(argv)

    from stable_baselines3 import PPO

    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)  # tiny models are per-op overhead: extra threads only synchronise
    timesteps = args.timesteps or (1024 * min(args.num_envs, 4) if args.tiny else 100_000)
    env = make_env(args)
    n_steps = args.n_steps or (max(16, 256 // args.num_envs) if args.tiny else 128)
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=n_steps,
        batch_size=min(64, n_steps * args.num_envs),  # a short smoke-test rollout is one minibatch
        n_epochs=4,
        learning_rate=3e-4,
        seed=args.seed,
        device=args.device if torch.device(args.device).type == "cuda" else "cpu",
        verbose=1,
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps, progress_bar=True)
    seconds = time.perf_counter() - t0
    episodes = list(model.ep_info_buffer)
    print(f"trained {model.num_timesteps} steps in {seconds:.0f} s ({model.num_timesteps / seconds:.1f} env steps/s)")
    if episodes:
        first, last = episodes[: max(1, len(episodes) // 4)], episodes[-max(1, len(episodes) // 4) :]
        print(
            f"episode return: first quarter {np.mean([e['r'] for e in first]):.2f}, "
            f"last quarter {np.mean([e['r'] for e in last]):.2f} ({len(episodes)} episodes kept)"
        )
    if args.out:
        from agents.policy_io import save_policy

        save_policy(model.policy, args.out)  # not model.save: its zip holds pickles that loading would run
        print(f"saved the policy to {args.out}")
    env.close()


if __name__ == "__main__":
    main()
