"""Train the world's step heads (:mod:`world_model.heads`) on real game data with the game's own labels.

    python -m agents.train_heads --vae checkpoints/doom_vae --out runs/heads \\
        --train-episodes 96 --val-episodes 24 --device cuda

1. **play**: episodes of the transfer task (:class:`agents.task.ExploreTask`: monsters on, the player can die) on
   the training maps and, for held-out scores, on the validation maps; each episode is driven by the data engine's
   explorer or by sticky random actions (held for a few steps), so the heads see walking, turning, getting
   blocked by walls and dying. Game worker processes play in parallel.
2. **encode**: every episode's video through the VAE encoder (the world's latent space; its fingerprint is
   recorded), one latent frame per env step.
3. **train**: one row per step: (latent before, latent after, action) -> (the player's motion in its own frame,
   from the engine's poses; whether the player died in the step). AdamW, a fixed number of steps.
4. **score** on the held-out episodes: motion error against two baselines (no motion; the mean motion of the
   step's key combination, i.e. what the keys alone say), the end head's recall and false-alarm rate, and the
   exploration return the heads' integrated poses give against the game's own return, per episode.

Writes ``<out>/heads.safetensors`` + ``heads.json`` (config, latent fingerprint, scores) and ``<out>/report.json``.
``--bundle FOLDER`` also copies the heads into a world bundle, which the env then uses for its reward.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.task import ExploreTask
from lingbot_env.rewards import explore_return, integrate, step_motion
from world_model.heads import (
    END_MAX_FALSE_ENDS,
    END_MIN_RECALL,
    StepHeads,
    StepHeadsConfig,
    end_head_trusted,
    save_heads,
)

FRAMES_PER_STEP = 4


# -- play ---------------------------------------------------------------------------------------------------------
class StickyRandom:
    """Uniform random actions, each held for 1-8 steps (a jittering random policy never gets anywhere)."""

    def __init__(self, seed: int, action_space) -> None:
        self.rng, self.space, self.left, self.action = np.random.default_rng(seed), action_space, 0, None

    def __call__(self, obs, info):
        if self.left == 0:
            self.action = self.rng.uniform(self.space.low, self.space.high).astype(np.float32)
            self.left = int(self.rng.integers(1, 9))
        self.left -= 1
        return self.action


def play_episode(args: tuple[ExploreTask, str, int, float]) -> dict[str, np.ndarray]:
    """One episode: frames uint8 [1 + 4n, H, W, 3], actions [n, 6], poses [1 + 4n, 5], died (bool)."""
    from distillation.data.policy import ExplorationPolicy

    task, split, seed, explorer_share = args
    env = task.real_env(split, seed=seed)
    obs, info = env.reset(seed=seed)
    use_explorer = np.random.default_rng(seed).random() < explorer_share
    policy = ExplorationPolicy(seed) if use_explorer else StickyRandom(seed, env.action_space)
    frames, poses, actions = [obs], [info["pose"]], []
    died = False
    while True:
        a = np.asarray(policy(obs, info), np.float32)
        obs, _, terminated, truncated, info = env.step(a)
        actions.append(a)
        frames.extend(info["frames"])
        poses.extend(info["poses"])
        if terminated or truncated:
            died = bool(terminated and info["dead"])  # the game's word: health stays > 0 at a mid-step death
            break
    env.close()
    return {
        "frames": np.stack(frames),
        "poses": np.stack(poses).astype(np.float32),
        "actions": np.stack(actions),
        "died": np.array(died),
        "explorer": np.array(use_explorer),
    }


def play(task: ExploreTask, split: str, episodes: int, seed: int, workers: int, explorer_share: float) -> list[dict]:
    jobs = [(task, split, seed + i, explorer_share) for i in range(episodes)]
    if workers <= 1:
        return [play_episode(j) for j in tqdm(jobs, desc=f"play {split}")]
    with mp.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(play_episode, jobs), total=len(jobs), desc=f"play {split}"))


# -- encode -------------------------------------------------------------------------------------------------------
@torch.no_grad()
def encode(vae, frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """Normalised latents ``[16, 1 + n, h, w]`` (bf16, CPU) of a video uint8 ``[1 + 4n, H, W, 3]``."""
    video = torch.from_numpy(frames).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    # One causal pass over the whole episode (the chunked streaming path gives the same latents, 4x slower here)
    return vae.encode(video.to(vae.dtype), chunked=False)[0].to(torch.bfloat16).cpu()


def rows_of(episodes: list[dict], latents: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    prev, cur, act, motion, ended = [], [], [], [], []
    for ep, z in zip(episodes, latents, strict=True):
        n = len(ep["actions"])
        prev.append(z[:, :n].transpose(0, 1))
        cur.append(z[:, 1 : n + 1].transpose(0, 1))
        act.append(torch.from_numpy(ep["actions"]))
        motion.append(torch.from_numpy(step_motion(ep["poses"])))
        e = torch.zeros(n)
        e[-1] = float(ep["died"])
        ended.append(e)
    return {k: torch.cat(v) for k, v in dict(prev=prev, cur=cur, act=act, motion=motion, ended=ended).items()}


# -- score --------------------------------------------------------------------------------------------------------
def key_pattern(actions: torch.Tensor) -> torch.Tensor:
    """An integer per row for the pressed-key combination (W, A, S, D > 0.5)."""
    keys = (actions[:, :4] > 0.5).long()
    return (keys * torch.tensor([1, 2, 4, 8])).sum(1)


@torch.no_grad()
def predict(heads: StepHeads, rows: dict[str, torch.Tensor], device, batch: int = 1024):
    out_m, out_e = [], []
    for i in range(0, len(rows["act"]), batch):
        m, e = heads(*(rows[k][i : i + batch].to(device).float() for k in ("prev", "cur", "act")))
        out_m.append(m.cpu())
        out_e.append(e.cpu())
    return torch.cat(out_m), torch.cat(out_e)


def score(heads, train_rows, val_rows, val_episodes, task: ExploreTask, device) -> dict[str, Any]:
    motion, logit = predict(heads, val_rows, device)
    true = val_rows["motion"]
    # Baseline: what the keys alone say (mean training motion per key combination).
    pat_tr, pat_va = key_pattern(train_rows["act"]), key_pattern(val_rows["act"])
    means = torch.zeros(16, 2)
    for p in range(16):
        sel = pat_tr == p
        if sel.any():
            means[p] = train_rows["motion"][sel].mean(0)
    by_keys = means[pat_va]

    def mae(pred):
        return float((pred - true).norm(dim=1).mean())

    ended = val_rows["ended"] > 0.5
    fired = logit > 0
    # Per-episode exploration return from the heads' integrated path, against the game's.
    game_ret, head_ret, keys_ret = [], [], []
    lo = 0
    for ep in val_episodes:
        n = len(ep["actions"])
        poses = ep["poses"]
        yaws = poses[:-1:FRAMES_PER_STEP, 3]
        game_ret.append(explore_return(poses[:, :2], task.explore_cell))
        head_ret.append(explore_return(integrate(poses[0, :2], yaws, motion[lo : lo + n].numpy()), task.explore_cell))
        keys_ret.append(explore_return(integrate(poses[0, :2], yaws, by_keys[lo : lo + n].numpy()), task.explore_cell))
        lo += n
    g, h, k = (np.array(x, float) for x in (game_ret, head_ret, keys_ret))

    def corr(a, b):
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")

    return {
        "rows": len(true),
        "motion_mae": mae(motion),
        "motion_mae_keys_only": mae(by_keys),
        "motion_mae_zero": mae(torch.zeros_like(true)),
        "mean_speed": float(true.norm(dim=1).mean()),
        "end_positives": int(ended.sum()),
        "end_recall": float((fired & ended).sum() / max(1, int(ended.sum()))),
        "end_false_alarm_rate": float((fired & ~ended).sum() / max(1, int((~ended).sum()))),
        "return_game_mean": float(g.mean()),
        "return_heads_mean": float(h.mean()),
        "return_heads_mae": float(np.abs(h - g).mean()),
        "return_heads_corr": corr(h, g),
        "return_keys_only_mae": float(np.abs(k - g).mean()),
        "return_keys_only_corr": corr(k, g),
    }


@torch.no_grad()
def score_in_dream(heads: StepHeads, model: str, val_episodes: list[dict], task: ExploreTask, device) -> dict[str, Any]:
    """The heads on the world model's own rollouts: every held-out episode replayed in the dream from its real
    start frame with its real actions (all episodes as one batch), the heads' return there against the game's
    for the same actions. This is the reward an agent training in the dream would get."""
    from lingbot_env.rewards import LearnedExplore
    from world_model.bundle import load_world
    from world_model.world import images_to_tensor

    n = len(val_episodes)
    lengths = np.array([len(e["actions"]) for e in val_episodes])
    steps = int(lengths.max())  # each episode counts its own steps; rows past their end idle on zero actions
    world = load_world(model, device=device, batch_size=n)
    world.heads = heads.to(device)
    firsts = np.stack([e["first"] if "first" in e else e["frames"][0] for e in val_episodes])
    world.reset(images_to_tensor(firsts), [world.spec.default_prompt] * n, seeds=list(range(n)))
    ctl = world.spec.control
    learned = LearnedExplore(n, task.explore_cell, ctl.turn_deg_per_frame, ctl.frames_per_latent)
    dream = np.zeros(n)
    ended = np.zeros(n, bool)
    for t in tqdm(range(steps), desc="dream replay"):
        live = t < lengths
        acts = np.stack([e["actions"][t] if t < len(e["actions"]) else np.zeros(6, np.float32) for e in val_episodes])
        world.step(torch.from_numpy(acts))
        motion, end = world.read_heads(torch.from_numpy(acts))
        dream += learned.step(motion.numpy(), acts) * live
        ended |= (end.numpy() > 0) & live
    game = np.array([explore_return(e["poses"][:, :2], task.explore_cell) for e in val_episodes], float)
    corr = float(np.corrcoef(dream, game)[0, 1]) if dream.std() > 0 and game.std() > 0 else float("nan")
    return {
        "episodes": n,
        "steps": lengths.tolist(),
        "return_game_mean": float(game.mean()),
        "return_dream_mean": float(dream.mean()),
        "return_dream_mae": float(np.abs(dream - game).mean()),
        "return_dream_corr": corr,
        "dream_ended": int(ended.sum()),
        "game_died": int(sum(bool(e["died"]) for e in val_episodes)),
    }


VAL_EPISODES = "val_episodes.npz"


def save_val_episodes(path: Path, episodes: list[dict]) -> None:
    """What a later dream score needs of the held-out episodes (start frame, actions, poses, death): ~70 kB each."""
    arrays = {}
    for i, e in enumerate(episodes):
        arrays.update({f"{i}_first": e["frames"][0], f"{i}_actions": e["actions"], f"{i}_poses": e["poses"]})
        arrays[f"{i}_died"] = e["died"]
    np.savez_compressed(path, count=len(episodes), **arrays)


def load_val_episodes(path: Path) -> list[dict]:
    with np.load(path, allow_pickle=False) as z:
        keys = ("first", "actions", "poses", "died")
        return [{k: z[f"{i}_{k}"] for k in keys} for i in range(int(z["count"]))]


def dream_only(out: Path, model: str, task: ExploreTask, device) -> None:
    """Score the heads in ``out`` in the dream of ``model`` on the saved held-out episodes; adds to report.json."""
    from world_model.heads import load_heads

    heads = load_heads(out)
    dream = score_in_dream(heads, model, load_val_episodes(out / VAL_EPISODES), task, device)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["scores_val_dream"] = {**dream, "model": model}
    report_path.write_text(json.dumps(report, indent=1))
    print(json.dumps(dream, indent=1))


# -- train --------------------------------------------------------------------------------------------------------
def train(rows: dict[str, torch.Tensor], steps: int, batch: int, lr: float, device, seed: int, end_weight: float):
    torch.manual_seed(seed)
    heads = StepHeads(StepHeadsConfig()).to(device)
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n = len(rows["act"])
    dev_rows = {k: v.to(device) for k, v in rows.items()}
    log = []
    for step in tqdm(range(steps), desc="train heads"):
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        b = {k: v[idx] for k, v in dev_rows.items()}
        for g in opt.param_groups:  # cosine to 5%
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        terms = heads.losses(b["prev"].float(), b["cur"].float(), b["act"], b["motion"], b["ended"], end_weight)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log.append({"step": step, **{k: float(v.detach()) for k, v in terms.items()}})
    return heads.eval(), log


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m agents.train_heads",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    ap.add_argument("--vae", default="checkpoints/doom_vae", help="VAE export whose encoder makes the latents")
    ap.add_argument("--out", default="runs/heads", help="output folder (heads + report.json)")
    ap.add_argument("--train-episodes", type=int, default=96, help="episodes played on the training maps")
    ap.add_argument("--val-episodes", type=int, default=24, help="episodes played on the held-out maps")
    ap.add_argument("--episode-steps", type=int, default=ExploreTask.episode_steps, help="env steps per episode")
    ap.add_argument(
        "--explorer-share", type=float, default=0.7, help="episodes played by the explorer (rest: sticky random)"
    )
    ap.add_argument("--workers", type=int, default=2, help="game worker processes")
    ap.add_argument("--steps", type=int, default=3000, help="training steps")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--end-weight", type=float, default=20.0, help="BCE weight of the (rare) death rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bundle", help="also copy the heads into this world bundle folder")
    ap.add_argument(
        "--terminate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="whether the env may end episodes on the end head: auto = only if its held-out recall is >= "
        f"{END_MIN_RECALL} and its false alarms would end <= {END_MAX_FALSE_ENDS:.0%}% of episodes",
    )
    ap.add_argument(
        "--dream-model", default="", help="also score the heads on this world's replays of the held-out episodes"
    )
    ap.add_argument(
        "--dream-only",
        action="store_true",
        help="only the dream score, of the heads already in --out on the episodes it saved (val_episodes.npz)",
    )
    args = ap.parse_args(argv)

    from distillation.vae_export import latent_fingerprint, load_exported_vae

    device = torch.device(args.device)
    task = ExploreTask(episode_steps=args.episode_steps)
    out = Path(args.out)
    if args.dream_only:
        dream_only(out, args.dream_model or "default", task, device)
        return
    t0 = time.perf_counter()
    train_eps = play(task, "train", args.train_episodes, args.seed, args.workers, args.explorer_share)
    val_eps = play(task, "val", args.val_episodes, args.seed + 100_000, args.workers, args.explorer_share)
    t_play = time.perf_counter() - t0
    vae = load_exported_vae(args.vae, device, decoder=False)
    train_rows = rows_of(train_eps, [encode(vae, e["frames"], device) for e in tqdm(train_eps, desc="encode train")])
    val_rows = rows_of(val_eps, [encode(vae, e["frames"], device) for e in tqdm(val_eps, desc="encode val")])
    t_enc = time.perf_counter() - t0 - t_play
    heads, log = train(train_rows, args.steps, args.batch_size, args.lr, device, args.seed, args.end_weight)
    scores = score(heads, train_rows, val_rows, val_eps, task, device)
    trusted = end_head_trusted(scores["end_recall"], scores["end_false_alarm_rate"], task.episode_steps)
    heads.cfg = dataclasses.replace(heads.cfg, terminates={"auto": trusted, "yes": True, "no": False}[args.terminate])
    scores["terminates"] = heads.cfg.terminates
    if not heads.cfg.terminates:
        print(
            "the end head does not end episodes (info['end_logit'] still reports it): "
            + ("its held-out recall / false alarms do not earn it" if args.terminate == "auto" else "--terminate no")
        )
    dream = score_in_dream(heads, args.dream_model, val_eps, task, device) if args.dream_model else None
    fingerprint = latent_fingerprint(args.vae)
    save_heads(heads.cpu(), out, fingerprint, scores)
    save_val_episodes(out / VAL_EPISODES, val_eps)
    report = {
        "scores_val_real": scores,
        "scores_val_dream": dream,
        "train_rows": len(train_rows["act"]),
        "train_deaths": int(train_rows["ended"].sum()),
        "seconds": {"play": t_play, "encode": t_enc, "total": time.perf_counter() - t0},
        "args": vars(args),
        "log": log,
        "vae_fingerprint": fingerprint,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"real": scores, "dream": dream}, indent=1))
    if args.bundle:
        from world_model.bundle import add_heads

        add_heads(args.bundle, out)


if __name__ == "__main__":
    main()
