"""A small CNN trained here on real game frames only, whose penultimate features the Fréchet distance compares.

No pretrained network can be downloaded here (FID's InceptionV3 included), so the feature space is learnt from
the game's own labels, per frame, on *training-map* frames played on the fly (held-out maps never train it):

- ``map``: which training map the frame is from (a 28-way classification on freedoom2): wall, floor and sky
  textures, light levels, level style;
- ``objects``: which visible-object categories are on screen (multi-label over ViZDoom's categories of
  :data:`lingbot_env.doom.labels.VISIBLE_CATEGORIES`, boxes of at least ``min_box_area`` pixels): monsters,
  pickups, decorations;
- ``depth``: the depth buffer on a coarse grid (log depth, ``depth_grid`` cells): the layout of the room.

The shared 128-d embedding that feeds the three heads is the feature vector. Frames are never blurred or
noised in training (only mirrored), so blur, noise and smeared textures move the features away from where
the real frames lie. Weights are saved as safetensors (fp16) + a JSON config with the training provenance and
the held-out accuracy (never pickled)::

    python -m distillation.evaluation.features --train --out checkpoints/features --budget-minutes 15

The held-out accuracy is measured on other episodes of the training maps (map, objects, depth) and on the
held-out maps themselves (objects and depth: the map head has no class for them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lingbot_env.doom.labels import VISIBLE_CATEGORIES

FORMAT = "lingbot-frame-features"
WEIGHTS = "features.safetensors"
CONFIG = "features.json"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "features"
CATEGORIES: tuple[str, ...] = tuple(sorted(VISIBLE_CATEGORIES))


@dataclass(frozen=True)
class FeatureConfig:
    """Architecture, labels and training of the feature network.

    Args:
        input_size: (W, H) frames are resized to (the Doom model's 128x96). widths: channels of the stride-2
            stages (the third and later have a second 3x3 conv). embed_dim: the feature size.
        maps: training maps = classes of the map head. categories: object categories of the objects head.
        min_box_area: pixels (at ``input_size``) a visible object's box needs to count as on screen.
        depth_grid: (rows, cols) of the coarse depth target.
        wad: the game data. steps / batch_size / lr: optimisation (cosine decay over the run, which ends at
            ``steps`` or when the time budget is spent). data_steps: training frames (one per game step, the
            step's last frame, where the labels are). val_steps: held-out episodes of the training maps.
            heldout_map_steps: frames of the held-out maps (evaluation only). episode_steps: steps per episode
            before a new map and seed. random_fraction: share of steps in random key/turn segments (more
            varied views than the explorer alone).
    """

    input_size: tuple[int, int] = (128, 96)
    widths: tuple[int, ...] = (24, 48, 96, 128)
    embed_dim: int = 128
    maps: tuple[str, ...] = ()
    categories: tuple[str, ...] = CATEGORIES
    min_box_area: int = 9
    depth_grid: tuple[int, int] = (6, 8)
    wad: str = "freedoom2"
    steps: int = 20000
    batch_size: int = 64
    lr: float = 2e-3
    data_steps: int = 24000
    val_steps: int = 2000
    heldout_map_steps: int = 2000
    episode_steps: int = 60
    random_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(str(m) for m in self.maps))
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "depth_grid", tuple(int(v) for v in self.depth_grid))
        if min(self.input_size) < 16 or len(self.widths) < 2 or min(self.widths) < 8:
            raise ValueError(f"input_size >= 16x16 and >= 2 widths >= 8 needed, got {self.input_size}, {self.widths}")
        if self.steps < 0 or self.batch_size < 1 or self.data_steps < 1 or self.val_steps < 0:
            raise ValueError("steps >= 0, batch_size >= 1, data_steps >= 1 and val_steps >= 0 are required")
        if self.heldout_map_steps < 0 or self.episode_steps < 1:
            raise ValueError("heldout_map_steps >= 0 and episode_steps >= 1 are required")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the network ----------------------------------------------------------------------------------------------------
def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class FeatureNet(nn.Module):
    """[N, 3, H, W] in [-1, 1] -> embedding [N, embed_dim] and the heads (map logits, object logits, depth).

    Four stride-2 stages (the last two with a second 3x3 conv), GroupNorm and GELU. The embedding reads the mean
    *and* the standard deviation over the image of every channel of every stage: the spread of the early,
    edge-like channels is what blur lowers and noise raises, and the map head uses it for texture, so fine detail
    stays in the features instead of being averaged away by one global pool at the end.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        a = 3
        for i, b in enumerate(config.widths):
            layers: list[nn.Module] = [nn.Conv2d(a, b, 3, stride=2, padding=1), _norm(b), nn.GELU()]
            if i >= 2:
                layers += [nn.Conv2d(b, b, 3, padding=1), _norm(b), nn.GELU()]
            stages.append(nn.Sequential(*layers))
            a = b
        self.stages = nn.ModuleList(stages)
        self.embed = nn.Sequential(nn.Linear(2 * sum(config.widths), config.embed_dim), nn.GELU())
        self.map_head = nn.Linear(config.embed_dim, max(len(config.maps), 1))
        self.object_head = nn.Linear(config.embed_dim, len(config.categories))
        gh, gw = config.depth_grid
        self.depth_head = nn.Linear(config.embed_dim, gh * gw)
        self.depth_grid = (gh, gw)
        self.categories = config.categories
        # Per-dimension mean and std of the features on real training frames, set after training: embeddings are
        # standardised by them, so every dimension counts alike and a Fréchet distance is in units of the real
        # frames' feature variance (the distance of two unrelated distributions is of the order of 2 x embed_dim).
        self.register_buffer("feature_mean", torch.zeros(config.embed_dim))
        self.register_buffer("feature_std", torch.ones(config.embed_dim))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and std over the image of every channel of every stage [N, 2 * sum(widths)]."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(out, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: the shared embedding the heads read [N, embed_dim]."""
        return self.embed(self.pooled(x))

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features standardised by the real training frames' statistics [N, embed_dim]."""
        return (self.features(x) - self.feature_mean) / self.feature_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)
        depth = self.depth_head(h).view(-1, *self.depth_grid)
        return h, self.map_head(h), self.object_head(h), depth


def to_input(frames: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, h, w] in [-1, 1] at ``size`` (W, H): antialiased bilinear resize if
    the frames are of another size (as for the probe)."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    w, h = size
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.div(127.5).sub(1.0)


class FrameFeatures:
    """A trained :class:`FeatureNet` with its config and metrics: ``embed`` frames, ``save`` / ``load``."""

    def __init__(self, net: FeatureNet, config: FeatureConfig, info: dict[str, Any] | None = None) -> None:
        self.net, self.config = net.eval(), config
        self.info = info or {}

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    @torch.no_grad()
    def embed(self, frames: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 [..., H, W, 3] -> standardised features float32 [..., embed_dim] (any frame size: resized to
        ``input_size``)."""
        frames = np.asarray(frames, np.uint8)
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        self.net.eval()
        out = [
            self.net.standardized(to_input(flat[i : i + batch], self.config.input_size)).numpy()
            for i in range(0, len(flat), batch)
        ]
        feats = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        return feats.astype(np.float32).reshape(*lead, self.dim)

    def save(self, folder: str | Path) -> Path:
        """``folder/features.safetensors`` (fp16 weights) + ``folder/features.json`` (format, config, info)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().half().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
        meta = {"format": FORMAT, "version": 1, "config": self.config.to_dict(), **self.info}
        (folder / CONFIG).write_text(json.dumps(meta, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> FrameFeatures:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
            raise FileNotFoundError(
                f"no feature network in {folder} (needs {WEIGHTS} and {CONFIG}): train one with "
                "python -m distillation.evaluation.features --train --out FOLDER"
            )
        meta = json.loads((folder / CONFIG).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / CONFIG} is not a frame feature network ({FORMAT})")
        cfg = FeatureConfig(**meta["config"])
        net = FeatureNet(cfg)
        net.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()})
        info = {k: v for k, v in meta.items() if k not in ("format", "version", "config")}
        return cls(net.to(device).eval(), cfg, info)

    def describe(self) -> dict[str, Any]:
        return {
            "embed_dim": self.dim,
            "input_size": list(self.config.input_size),
            "heldout": self.info.get("heldout", {}),
            "trained": {k: self.info.get("training", {}).get(k) for k in ("frames", "steps", "seconds", "git_commit")},
        }


def round_to_saved_precision(net: FeatureNet) -> FeatureNet:
    """Round the weights to fp16 and back, as :meth:`FrameFeatures.save` stores them (so metrics match the file)."""
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.half().float())
    return net


# -- labels and data from the real game -----------------------------------------------------------------------------
def object_labels(objects: list[dict[str, Any]], categories: tuple[str, ...], min_area: float, scale: float):
    """Visible-object dicts of one frame -> float32 [C] multi-hot of ``categories`` with a box of at least
    ``min_area`` pixels (box sides scaled by ``scale`` from the game's frames to the network's input)."""
    index = {c: i for i, c in enumerate(categories)}
    out = np.zeros(len(categories), np.float32)
    for o in objects:
        i = index.get(o["category"])
        if i is not None and o["box"][2] * o["box"][3] * scale * scale >= min_area:
            out[i] = 1.0
    return out


def depth_target(depth: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """uint8 depth [H, W] -> float32 [rows, cols]: log1p depth on [0, 1], averaged over each grid cell."""
    d = torch.from_numpy(np.log1p(np.asarray(depth, np.float32)) / np.log1p(255.0))[None, None]
    return F.adaptive_avg_pool2d(d, grid)[0, 0].numpy()


@dataclass
class FeatureData:
    """Labelled real frames: ``frames`` uint8 [N, h, w, 3] at the net's input size, ``map_index`` int64 [N]
    (-1: a map the map head has no class for), ``objects`` float32 [N, C], ``depth`` float32 [N, rows, cols]."""

    frames: np.ndarray
    map_index: np.ndarray
    objects: np.ndarray
    depth: np.ndarray
    maps: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


def collect_feature_data(
    game: Any, maps: tuple[str, ...], steps: int, cfg: FeatureConfig, seed: int, progress: bool = False
) -> FeatureData:
    """Play ``steps`` steps on ``maps`` in one game process (episodes of ``cfg.episode_steps`` on a random map
    and seed) and keep each step's last frame with its labels."""
    from tqdm.auto import tqdm

    from distillation.evaluation.game import fresh_game
    from distillation.evaluation.probe import ProbeTrainingPolicy, downsize

    if not (game.labels and game.depth):
        raise ValueError("the game config needs labels=True and depth=True for the feature network's labels")
    rng = np.random.default_rng([cfg.seed, seed, 7])
    index = {m: i for i, m in enumerate(cfg.maps)}
    w, h = cfg.input_size
    scale = w / game.output_size[0]
    frames = np.empty((steps, h, w, 3), np.uint8)
    map_index = np.empty(steps, np.int64)
    objects = np.empty((steps, len(cfg.categories)), np.float32)
    depth = np.empty((steps, *cfg.depth_grid), np.float32)
    names: list[str] = []
    bar = tqdm(total=steps, desc=f"frames {seed}", unit="frame", disable=not progress, leave=False)
    made = 0
    with fresh_game(game) as env:
        while made < steps:
            ep_seed = int(rng.integers(0, 2**31 - 1))
            map_name = str(rng.choice(maps))
            obs, info = env.reset(seed=ep_seed, options={"map": map_name})
            policy = ProbeTrainingPolicy(ep_seed, game, cfg.random_fraction)
            for _ in range(min(cfg.episode_steps, steps - made)):
                obs, _, term, trunc, info = env.step(policy(obs, info))
                if term or trunc:
                    break  # a level exit: what was kept stays, the next episode starts elsewhere
                frames[made] = downsize(obs, cfg.input_size)
                map_index[made] = index.get(map_name, -1)
                objects[made] = object_labels(info["visible_objects"], cfg.categories, cfg.min_box_area, scale)
                depth[made] = depth_target(info["depth"], cfg.depth_grid)
                names.append(map_name)
                made += 1
                bar.update(1)
    bar.close()
    return FeatureData(frames, map_index, objects, depth, names)


# -- training and held-out accuracy ---------------------------------------------------------------------------------
def feature_loss(net: FeatureNet, x: torch.Tensor, maps: torch.Tensor, objects: torch.Tensor, depth: torch.Tensor):
    """Map cross-entropy (rows with a map class) + object BCE + 4 x depth L1; returns (loss, parts dict)."""
    _, map_logits, obj_logits, depth_pred = net(x)
    known = maps >= 0
    map_loss = F.cross_entropy(map_logits[known], maps[known]) if known.any() else map_logits.sum() * 0
    obj_loss = F.binary_cross_entropy_with_logits(obj_logits, objects)
    depth_loss = F.l1_loss(depth_pred, depth)
    loss = map_loss + obj_loss + 4.0 * depth_loss
    parts = {"map": map_loss.item(), "objects": obj_loss.item(), "depth": depth_loss.item()}
    return loss, parts


def batch_tensors(data: FeatureData, rows: np.ndarray, flip: np.ndarray | None = None):
    frames, depth = data.frames[rows], data.depth[rows]
    if flip is not None and flip.any():  # the mirrored world: same map, same objects, depth mirrored
        frames, depth = frames.copy(), depth.copy()
        frames[flip] = frames[flip][:, :, ::-1]
        depth[flip] = depth[flip][:, :, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return (
        x,
        torch.from_numpy(data.map_index[rows]),
        torch.from_numpy(data.objects[rows]),
        torch.from_numpy(np.ascontiguousarray(depth)),
    )


@torch.no_grad()
def evaluate_on_data(net: FeatureNet, data: FeatureData, batch: int = 256) -> dict[str, Any]:
    """Held-out scores: map top-1 accuracy (rows with a map class), object labels (bitwise and exact accuracy,
    macro F1 over categories present), depth L1 (on the log-depth target) against the mean-depth baseline."""
    net.eval()
    maps_ok, obj_pred, depth_err = [], [], []
    for i in range(0, len(data), batch):
        rows = np.arange(i, min(i + batch, len(data)))
        x, m, o, d = batch_tensors(data, rows)
        _, map_logits, obj_logits, depth_pred = net(x)
        known = m >= 0
        maps_ok.append((map_logits.argmax(-1)[known] == m[known]).numpy())
        obj_pred.append((obj_logits > 0).numpy())
        depth_err.append((depth_pred - d).abs().mean((1, 2)).numpy())
    pred = np.concatenate(obj_pred) if obj_pred else np.zeros((0, data.objects.shape[1]), bool)
    true = data.objects > 0.5
    f1 = {}
    for c, name in enumerate(net.categories):
        tp = float((pred[:, c] & true[:, c]).sum())
        pos, got = float(true[:, c].sum()), float(pred[:, c].sum())
        if pos > 0:
            f1[name] = 2 * tp / (pos + got)
    maps_ok_all = np.concatenate(maps_ok) if maps_ok else np.zeros(0, bool)
    baseline = np.abs(data.depth - data.depth.mean(0, keepdims=True)).mean() if len(data) else float("nan")
    return {
        "frames": len(data),
        "map_accuracy": float(maps_ok_all.mean()) if len(maps_ok_all) else None,
        "map_frames": int(len(maps_ok_all)),
        "objects_bitwise_accuracy": float((pred == true).mean()) if len(pred) else None,
        "objects_exact_accuracy": float((pred == true).all(1).mean()) if len(pred) else None,
        "objects_macro_f1": float(np.mean(list(f1.values()))) if f1 else None,
        "objects_f1": f1,
        "depth_l1": float(np.concatenate(depth_err).mean()) if depth_err else None,
        "depth_l1_mean_baseline": float(baseline),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def train_features(
    cfg: FeatureConfig,
    budget_s: float | None = None,
    progress: bool = True,
    log: Any = None,
) -> FrameFeatures:
    """Collect real training-map frames, train the network for ``cfg.steps`` steps or until ``budget_s``
    seconds (data collection included) are spent, and measure it on held-out episodes and held-out maps."""
    from tqdm.auto import tqdm

    from distillation.data.splits import MapSplit
    from distillation.evaluation.game import game_config

    t0 = time.perf_counter()
    split = MapSplit(cfg.wad)
    if not cfg.maps:
        cfg = dataclasses.replace(cfg, maps=split.maps("train"))
    leak = sorted(set(cfg.maps) & set(split.maps("val")))
    if leak:
        raise ValueError(f"held-out maps {leak} cannot be training classes")
    game = game_config(cfg.input_size, cfg.wad)
    torch.manual_seed(cfg.seed)
    train = collect_feature_data(game, cfg.maps, cfg.data_steps, cfg, seed=0, progress=progress)
    val = collect_feature_data(game, cfg.maps, cfg.val_steps, cfg, seed=1, progress=progress) if cfg.val_steps else None
    heldout = (
        collect_feature_data(game, split.maps("val"), cfg.heldout_map_steps, cfg, seed=2, progress=progress)
        if cfg.heldout_map_steps
        else None
    )
    t_data = time.perf_counter() - t0
    net = FeatureNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng([cfg.seed, 3])
    reserve = 60.0  # seconds kept for the feature statistics and the held-out evaluation
    t_train = time.perf_counter()
    train_budget = None if budget_s is None else max(budget_s - (t_train - t0) - reserve, 1.0)
    losses: list[dict[str, float]] = []
    bar = tqdm(total=cfg.steps, desc="features", unit="step", disable=not progress)
    step = 0
    for step in range(cfg.steps):
        elapsed = time.perf_counter() - t_train
        done = step / max(cfg.steps, 1)
        if train_budget is not None:
            done = max(done, elapsed / train_budget)
        if done >= 1.0:
            break
        warm = min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * warm * 0.5 * (1 + np.cos(np.pi * done))
        net.train()
        rows = rng.integers(0, len(train), cfg.batch_size)
        loss, parts = feature_loss(net, *batch_tensors(train, rows, rng.random(cfg.batch_size) < 0.5))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(parts)
        bar.update(1)
        if step % 50 == 0:
            recent = {k: np.mean([p[k] for p in losses[-50:]]) for k in parts}
            bar.set_postfix({k: f"{v:.3f}" for k, v in recent.items()})
            if log is not None:
                log({"step": step, "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"], **recent})
    else:
        step = cfg.steps
    bar.close()
    set_feature_stats(net, _subset(train, 4000, rng))
    round_to_saved_precision(net)
    recent = {k: float(np.mean([p[k] for p in losses[-100:]])) for k in losses[-1]} if losses else {}
    info: dict[str, Any] = {
        "training": {
            "frames": len(train),
            "steps": step,
            "batch_size": cfg.batch_size,
            "maps": list(cfg.maps),
            "final_loss": recent,
            "data_seconds": t_data,
            "train_seconds": time.perf_counter() - t_train,
            "torch_threads": torch.get_num_threads(),
            "git_commit": _git_commit(),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "game": game.to_dict(),
            "data": "one frame per game step (its last), explorer with random key/turn segments, "
            f"episodes of {cfg.episode_steps} steps on random training maps and seeds; mirrored at random",
        },
        "heldout": {},
        "parameters": int(sum(p.numel() for p in net.parameters())),
    }
    info["training"]["train_accuracy"] = evaluate_on_data(net, _subset(train, 2000, rng))
    if val is not None:
        info["heldout"]["training_maps_other_episodes"] = evaluate_on_data(net, val)
    if heldout is not None:
        info["heldout"]["heldout_maps"] = {"maps": list(split.maps("val")), **evaluate_on_data(net, heldout)}
    info["training"]["seconds"] = time.perf_counter() - t0
    return FrameFeatures(net, cfg, info)


@torch.no_grad()
def set_feature_stats(net: FeatureNet, data: FeatureData, batch: int = 256) -> None:
    """Set the standardisation of the features (:meth:`FeatureNet.standardized`) from real frames ``data``."""
    net.eval()
    feats = torch.cat([net.features(batch_tensors(data, np.arange(i, min(i + batch, len(data))))[0]) for i in
                       range(0, len(data), batch)])  # fmt: skip
    net.feature_mean.copy_(feats.mean(0))
    net.feature_std.copy_(feats.std(0).clamp_min(1e-3 * float(feats.std(0).max()) + 1e-8))


def _subset(data: FeatureData, n: int, rng: np.random.Generator) -> FeatureData:
    rows = np.sort(rng.choice(len(data), min(n, len(data)), replace=False))
    return FeatureData(data.frames[rows], data.map_index[rows], data.objects[rows], data.depth[rows])


# -- command line ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    d = FeatureConfig()
    ap = argparse.ArgumentParser(
        prog="python -m distillation.evaluation.features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--train", action="store_true", help="train a feature network on real training-map frames")
    ap.add_argument("--out", default=str(DEFAULT_DIR), help=f"folder to write (default {DEFAULT_DIR})")
    ap.add_argument("--budget-minutes", type=float, default=15.0, help="wall time for everything (default 15)")
    ap.add_argument("--steps", type=int, default=d.steps, help=f"most training steps (default {d.steps})")
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--data-steps", type=int, default=d.data_steps, help="training frames (default %(default)s)")
    ap.add_argument("--val-steps", type=int, default=d.val_steps, help="held-out training-map frames")
    ap.add_argument("--heldout-map-steps", type=int, default=d.heldout_map_steps, help="held-out map frames")
    ap.add_argument("--widths", default=",".join(map(str, d.widths)), help="stage widths (default %(default)s)")
    ap.add_argument("--wad", default=d.wad)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.train:
        ap.error("nothing to do: pass --train (see --help)")
    if args.budget_minutes <= 0:
        ap.error("--budget-minutes must be > 0")
    try:
        cfg = FeatureConfig(
            widths=tuple(int(v) for v in args.widths.split(",")),
            wad=args.wad,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            data_steps=args.data_steps,
            val_steps=args.val_steps,
            heldout_map_steps=args.heldout_map_steps,
            seed=args.seed,
        )
    except ValueError as e:
        ap.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"

    def log(row: dict[str, Any]) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    feats = train_features(cfg, args.budget_minutes * 60.0, not args.no_progress, log)
    feats.info["training"]["command"] = ["python", "-m", "distillation.evaluation.features", *(argv or sys.argv[1:])]
    feats.save(out)
    size = (out / WEIGHTS).stat().st_size
    print(json.dumps({"out": str(out), "weights_bytes": size, "heldout": feats.info["heldout"]}, indent=1))
    return feats.info


if __name__ == "__main__":
    main()
