"""One policy in the dream and in the real game, side by side, from the same first frame.

    python -m agents.side_by_side --policy runs/agents/ppo_dream --steps 150 --out runs/agents/dream_vs_game.mp4

Left: the real game (ViZDoom) on a held-out map, episode seed ``--seed``; right: the world model, started from that
episode's first real frame. Each panel is driven by the policy on its own observations (the dream's frames on the
right, the game's on the left), as it would be when deployed in either: the two drift apart as soon as the policy
sees something different. The JSON beside the video holds both episodes' per-step rewards (the game's new map
cells, the dream's reward as its ``info["reward_source"]`` says) and actions; an episode that ends (a death, or
``--steps``) holds its last frame while the other plays on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.evaluate import BUILTIN, make_policy
from agents.task import ExploreTask


def side_by_side(
    policy: str, model: str, out: str | Path, steps: int, seed: int = 10_000, split: str = "val", device: str = "cpu"
) -> dict[str, Any]:
    """Play ``steps`` steps of ``policy`` in the real game and in ``model``'s world from the same first frame;
    writes ``out`` (MP4, real | dream) and ``out`` with ``.json``; returns that JSON's content."""
    if policy == "explorer":
        raise ValueError(
            "--policy explorer reads the game's own map (walls, position), which the dream does not have: "
            "use random, hold_w or a trained policy folder"
        )
    import gymnasium as gym

    import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
    from distillation.evaluation.report import SideBySideVideo

    task = ExploreTask(episode_steps=steps)
    real = task.real_env(split, seed=seed)
    obs_r, info_r = real.reset(seed=seed)
    dream = gym.make("LingBotWorld-v0", model=model, device=device, max_episode_steps=steps)
    obs_d, info_d = dream.reset(seed=seed, options={"image": obs_r})
    if obs_d.shape != obs_r.shape:
        raise ValueError(
            f"the world {model!r} makes {obs_d.shape[1]}x{obs_d.shape[0]} frames, the game "
            f"{obs_r.shape[1]}x{obs_r.shape[0]}: a policy cannot read both; use a world of the game's frame size"
        )
    # one policy object per panel, seeded alike: a random policy plays the same action sequence in both
    act_r, _ = make_policy(policy, real.action_space, seed)
    act_d, _ = make_policy(policy, dream.action_space, seed)
    video = SideBySideVideo(out, fps=dream.metadata.get("video_fps", 17.5), labels=("real game", f"dream: {model}"))
    video.add(obs_r[None], obs_d[None])
    log: dict[str, list] = {"reward_game": [], "reward_dream": [], "action_game": [], "action_dream": []}
    source, ended = "none", {"game": None, "dream": None}
    for t in tqdm(range(1, steps + 1), desc="real | dream", unit="step"):
        # an episode that ended holds its last frame while the other plays on
        frames_r, frames_d = obs_r[None], obs_d[None]
        rew_r = rew_d = 0.0
        a_r, a_d = np.asarray(act_r(obs_r, info_r), np.float32), np.asarray(act_d(obs_d, info_d), np.float32)
        if ended["game"] is None:
            obs_r, rew_r, term_r, trunc_r, info_r = real.step(a_r)
            frames_r = info_r.get("frames", obs_r[None])
            ended["game"] = t if term_r or trunc_r else None
        if ended["dream"] is None:
            obs_d, rew_d, term_d, trunc_d, info_d = dream.step(a_d)
            frames_d = info_d.get("frames", obs_d[None])
            source = info_d.get("reward_source", source)
            ended["dream"] = t if term_d or trunc_d else None
        n = max(len(frames_r), len(frames_d))
        video.add(_hold(frames_r, n), _hold(frames_d, n))
        log["reward_game"].append(float(rew_r))
        log["reward_dream"].append(float(rew_d))
        log["action_game"].append(a_r.tolist())
        log["action_dream"].append(a_d.tolist())
        if ended["game"] is not None and ended["dream"] is not None:
            break
    video.close()
    real.close()
    dream.close()
    res = {
        "policy": policy,
        "model": model,
        "split": split,
        "seed": seed,
        "map": info_r.get("map"),
        "steps": len(log["reward_game"]),
        "return_game": float(sum(log["reward_game"])),
        "return_dream": float(sum(log["reward_dream"])),
        "ended_at": ended,  # the step each episode ended at (death, or the step limit); None: still going
        "dream_reward_source": source,
        "video": str(out),
        **log,
    }
    Path(out).with_suffix(".json").write_text(json.dumps(res, indent=1))
    return res


def _hold(frames: np.ndarray, n: int) -> np.ndarray:
    """``frames`` ``[k, H, W, 3]`` padded to ``n`` frames with its last one (a finished episode's still frame)."""
    return frames if len(frames) == n else np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), 0)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agents.side_by_side", description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True, help=f"one of {BUILTIN} or a saved policy folder (agents.train_ppo)")
    ap.add_argument("--model", default="default", help="the world model (a preset name or bundle folder)")
    ap.add_argument("--steps", type=int, default=150, help="env steps (4 video frames each)")
    ap.add_argument("--seed", type=int, default=10_000, help="the episode seed (10,000: the first scored episode)")
    ap.add_argument("--split", default="val", choices=("train", "val"), help="maps to play (val: held out)")
    ap.add_argument("--device", default="cpu", help="where the world runs")
    ap.add_argument("--out", default="runs/agents/dream_vs_game.mp4", help="the MP4 (a JSON goes beside it)")
    args = ap.parse_args(argv)
    res = side_by_side(args.policy, args.model, args.out, args.steps, args.seed, args.split, args.device)
    print(
        f"{res['steps']} steps on {res['map']}: the game paid {res['return_game']:.0f} cells, the dream "
        f"{res['return_dream']:.1f} ({res['dream_reward_source']}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
