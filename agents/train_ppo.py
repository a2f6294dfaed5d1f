"""Train a PPO agent (Stable-Baselines3, ``CnnPolicy``) on the transfer task, in the real game or in the dream,
and score it in the real game on held-out maps as it learns.

    python -m agents.train_ppo --world real --timesteps 100000 --envs 4 --out runs/agents/ppo_real
    python -m agents.train_ppo --world dream --model default --device cuda --envs 64 --timesteps 1000000 \\
        --out runs/agents/ppo_dream

``--world real``: the game itself (:meth:`agents.task.ExploreTask.real_env`, training maps), rewarded by the game.
``--world dream``: ``LingBotWorld-v0`` as a batched vector env (one model call steps every world), started from
real frames of the training maps, rewarded and terminated by the world bundle's step heads (a bundle without heads
is refused: the dream would pay nothing). Either way, every ``--eval-every`` steps the deterministic policy plays
``--eval-episodes`` episodes of the real game on the held-out maps; the curve goes to ``curve.json`` / ``curve.png``
and the policy to ``policy.safetensors`` + ``policy.json`` (:mod:`agents.policy_io`: no pickles; score it again
with ``python -m agents.evaluate --policy <out>``). The observation is the frame at the world's size in both worlds,
or what ``--view-size 64x48 --view-gray --view-stack 4`` make of it (:class:`lingbot_env.agent_view.AgentView`,
recorded in ``policy.json``, so the policy is scored through the same eyes).

Resumable: every evaluation also writes a training checkpoint to ``<out>`` (policy, optimizer, steps done, the
curve), atomically; the same command again goes on from it. ``--max-minutes`` ends a run in time (it evaluates and
saves before it stops), so a run can span calls of a time-limited machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import evaluate, through_view
from agents.task import ExploreTask
from lingbot_env.agent_view import AgentView


def real_vec_env(task: ExploreTask, n: int, seed: int, view: AgentView):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    # DummyVecEnv: the game steps in well under a millisecond per frame, the policy's forward pass dominates.
    envs = [lambda i=i: view.wrap(task.real_env("train", seed=seed + 1000 * i), stack=False) for i in range(n)]
    return view.stack_sb3(VecMonitor(DummyVecEnv(envs)))


def start_frames(task: ExploreTask, n: int, seed: int) -> list[np.ndarray]:
    """Real first frames of the training maps (one per dream env): where the dream episodes start."""
    env = task.real_env("train", seed=seed)
    frames = [env.reset(seed=seed + i)[0] for i in range(n)]
    env.close()
    return frames


def dream_vec_env(task: ExploreTask, n: int, seed: int, model: str, device: str, view: AgentView):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecMonitor

    import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
    from lingbot_env.wrappers import SB3VecEnv

    venv = gym.make_vec(
        "LingBotWorld-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        model=model,
        device=device,
        image=start_frames(task, n, seed),
        max_episode_steps=task.episode_steps,
    )
    if getattr(venv.world, "heads", None) is None:
        raise ValueError(
            f"the world {model!r} has no step heads, so the dream pays no reward: train them with "
            "python -m agents.train_heads --bundle <the world's folder>"
        )
    return view.stack_sb3(VecMonitor(SB3VecEnv(view.wrap_vector(venv))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m agents.train_ppo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    ap.add_argument("--world", choices=("real", "dream"), required=True, help="where the agent learns")
    ap.add_argument("--model", default="default", help="dream: the world model (a bundle with step heads)")
    ap.add_argument("--timesteps", type=int, default=100_000, help="env steps to train for")
    ap.add_argument("--envs", type=int, default=4, help="parallel envs")
    ap.add_argument("--n-steps", type=int, default=128, help="PPO rollout length per env")
    ap.add_argument("--lr", type=float, default=2.5e-4)
    ap.add_argument("--ent-coef", type=float, default=0.01)
    ap.add_argument("--episode-steps", type=int, default=ExploreTask.episode_steps)
    ap.add_argument("--eval-every", type=int, default=20_000, help="env steps between real-game evaluations")
    ap.add_argument("--eval-episodes", type=int, default=10, help="held-out real-game episodes per evaluation")
    ap.add_argument("--view-size", default=None, help="the policy's frames resized to WIDTHxHEIGHT, e.g. 64x48")
    ap.add_argument("--view-gray", action="store_true", help="the policy sees gray frames (one channel)")
    ap.add_argument("--view-stack", type=int, default=1, help="the policy sees its last N frames (motion)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the policy (and the dream) runs")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (evaluated and saved) after this long")
    ap.add_argument("--out", required=True, help="folder for the policy, its checkpoint, curve.json, curve.png")
    args = ap.parse_args(argv)

    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.policy_io import save_policy
    from distillation.training.checkpoint import restore_state, save_state

    task = ExploreTask(episode_steps=args.episode_steps)
    view = AgentView.parse(args.view_size, args.view_gray, args.view_stack)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.world == "real":
        env = real_vec_env(task, args.envs, args.seed, view)
    else:
        env = dream_vec_env(task, args.envs, args.seed, args.model, args.device, view)
    model = PPO(
        "CnnPolicy", env, n_steps=args.n_steps, batch_size=min(256, args.n_steps * args.envs), learning_rate=args.lr,
        ent_coef=args.ent_coef, seed=args.seed, device=args.device, verbose=0,
    )  # fmt: skip
    curve = Curve()
    # The project's training checkpoint (safetensors + JSON, RNG included): policy, optimizer and the curve so far.
    ckpt, parts = out / "checkpoint.pt", {"policy": model.policy, "optimizer": model.policy.optimizer, "curve": curve}
    config = vars(args)
    done = restore_state(ckpt, parts, config, SAME_SETTINGS, map_location=model.device, older=VIEW_BEFORE)
    if done is not None:
        model.num_timesteps = done  # learn(reset_num_timesteps=False) goes on from here
        print(f"resumed from {ckpt} at {done} env steps", flush=True)
    t0 = time.perf_counter()
    seconds_before = curve[-1]["seconds"] if curve else 0.0

    def score(steps: int) -> None:
        act, _ = through_view(model.policy, view)
        act.__name__ = f"ppo_{args.world}"
        res = evaluate(act, task, "val", args.eval_episodes, seed=10_000, progress=False)
        train_returns = [e["r"] for e in model.ep_info_buffer] if model.ep_info_buffer else []
        curve.append({
            "timesteps": steps, "real_val_return": res["mean_return"], "real_val_stderr": res["stderr"],
            "train_return": float(np.mean(train_returns)) if train_returns else None,
            "seconds": seconds_before + time.perf_counter() - t0,
        })  # fmt: skip
        print(json.dumps(curve[-1]), flush=True)
        write_curve(out, curve, args)
        save_state(ckpt, steps, config, parts)

    class EveryN(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = (model.num_timesteps // args.eval_every + 1) * args.eval_every  # the next after a resume

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += args.eval_every
                score(self.num_timesteps)
            return not out_of_time()

    def out_of_time() -> bool:
        return args.max_minutes is not None and time.perf_counter() - t0 > 60 * args.max_minutes

    if not curve:
        score(0)
    left = args.timesteps - model.num_timesteps
    if left > 0 and not out_of_time():
        model.learn(left, callback=EveryN(), progress_bar=True, reset_num_timesteps=False)
    if curve[-1]["timesteps"] < model.num_timesteps:
        score(model.num_timesteps)
    save_policy(model.policy, out, {"world": args.world, "timesteps": model.num_timesteps, "view": view.to_dict()})
    env.close()


# Settings a resumed run must share with its checkpoint (the policy, its inputs or its task would change).
SAME_SETTINGS = ("world", "model", "envs", "n_steps", "episode_steps", "view_size", "view_gray", "view_stack")
VIEW_BEFORE = {"view_size": None, "view_gray": False, "view_stack": 1}  # runs from before --view-*


class Curve(list):
    """The learning curve (one dict per evaluation), checkpointed with the policy as a ``state_dict`` part."""

    def state_dict(self) -> dict[str, Any]:
        return {"points": list(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self[:] = state["points"]


def write_curve(out: Path, curve: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from distillation.evaluation.plots import Series, line_plot

    (out / "curve.json").write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1))
    if len(curve) > 1:
        x = [c["timesteps"] for c in curve]
        ys = [c["real_val_return"] for c in curve]
        band = [c["real_val_stderr"] for c in curve]
        series = [Series(f"real game, held-out maps (trained in the {args.world})", ys, band=band)]
        line_plot(out / "curve.png", x, series, f"PPO trained in the {args.world}", "env steps", "cells explored")


if __name__ == "__main__":
    main()
