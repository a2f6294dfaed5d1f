"""The inverse-dynamics probe: a small CNN that reads the keys and the turn direction off real frames.

Controllability is measured by applying it to generated frames: if a model follows the actions, the probe reads
them off its frames about as well as off the game's. The probe sees one step: the frame before the step and the
step's 4 frames (frames ``4j .. 4j+4`` for action ``j``), each downsized to ``input_size`` (the same resize for real
and generated frames), stacked as 15 channels. It predicts

- the WASD keys (multi-label: 4 sigmoid outputs, pressed when > 0.5), and
- the turn direction from the sign of ``yaw`` with a dead zone: left (``yaw < -dead_zone``), none, right.

It is trained on real *training-map* frames made on the fly: the exploration policy, with segments of random
key/turn actions mixed in so that every key and direction is common, and mirrored copies (A <-> D, left <-> right)
as augmentation. Held-out maps are never used for training; the harness measures its accuracy there. Steps
where the keys could not move the real player (blocked by a wall, see :func:`scorable`) are left out of training
and of scoring.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distillation.data.policy import ExplorationPolicy
from lingbot_env.actions import make_action
from lingbot_env.doom.game import DoomConfig

FORMAT = "lingbot-inverse-dynamics-probe"
TURN_NAMES = ("left", "none", "right")
WINDOW = 5  # the frame before the step + its 4 frames
A_KEY, D_KEY = 1, 3
MIN_MOVE = 8.0  # map units per step; walking from rest covers about 15 in the first step


@dataclass(frozen=True)
class ProbeConfig:
    """Probe architecture, labels and training (CPU-friendly defaults: a few minutes on 2 cores).

    Args:
        input_size: (W, H) frames are resized to. width: channels of the first conv (doubling after).
        dead_zone: ``|yaw|`` at or below this counts as "no turn" (yaw is a fraction of 2 degrees per frame).
        steps, batch_size, lr: optimisation. data_steps / val_data_steps: real game steps collected for training /
        held-out probe validation (on other training-map episodes). episode_steps: steps per episode before a new
        map and seed. random_fraction: share of steps played by random key/turn segments instead of the explorer.
        segment_steps: (min, max) steps a random action is held. Doom's momentum carries about half of a step's
        velocity into the next, so the first step after a change is ambiguous; segments of several steps keep
        those rare, as in the evaluation clips (held scripted actions, smooth explorer play).
    """

    input_size: tuple[int, int] = (64, 48)
    width: int = 32
    dead_zone: float = 0.2
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    data_steps: int = 6000
    val_data_steps: int = 400
    episode_steps: int = 100
    random_fraction: float = 0.5
    segment_steps: tuple[int, int] = (2, 6)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "segment_steps", tuple(int(v) for v in self.segment_steps))
        if not 1 <= self.segment_steps[0] <= self.segment_steps[1]:
            raise ValueError(f"segment_steps must be (min, max) with 1 <= min <= max, got {self.segment_steps}")
        if min(self.input_size) < 16:
            raise ValueError(f"input_size must be at least 16x16, got {self.input_size}")
        if self.steps < 0 or self.batch_size < 1 or self.data_steps < 1 or self.val_data_steps < 0:
            raise ValueError("steps >= 0, batch_size >= 1, data_steps >= 1 and val_data_steps >= 0 are required")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError(f"dead_zone must be in [0, 1), got {self.dead_zone}")
        if not 0.0 <= self.random_fraction <= 1.0:
            raise ValueError(f"random_fraction must be in [0, 1], got {self.random_fraction}")


# -- labels and inputs ----------------------------------------------------------------------------------------------
def action_labels(actions: np.ndarray, dead_zone: float) -> tuple[np.ndarray, np.ndarray]:
    """``actions`` [..., 6] -> keys float32 [..., 4] (0/1) and turn int64 [...] (0 left, 1 none, 2 right)."""
    a = np.asarray(actions, np.float32)
    keys = (a[..., :4] > 0.5).astype(np.float32)
    yaw = a[..., 4]
    turn = np.where(yaw > dead_zone, 2, np.where(yaw < -dead_zone, 0, 1)).astype(np.int64)
    return keys, turn


def scorable(actions: np.ndarray, displacement: np.ndarray, min_move: float = MIN_MOVE) -> np.ndarray:
    """bool [...]: False for steps whose movement keys moved the real player less than ``min_move`` map units.

    Walking into a wall leaves no trace of the keys in the real frames, so such steps can neither teach the probe
    nor score a model (a model that walks through the wall would be marked wrong for it). ``actions`` [..., 6],
    ``displacement`` [...] (see :func:`~distillation.evaluation.game.step_displacement`).
    """
    keys = np.asarray(actions)[..., :4] > 0.5
    forward = keys[..., 0].astype(int) - keys[..., 2]
    side = keys[..., 3].astype(int) - keys[..., 1]
    return ((forward == 0) & (side == 0)) | (np.asarray(displacement) >= min_move)


def downsize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [..., H, W, 3] -> uint8 [..., h, w, 3] at ``size`` (W, H): antialiased bilinear, as for every input."""
    w, h = size
    lead = frames.shape[:-3]
    if frames.shape[-3:-1] == (h, w):
        return np.ascontiguousarray(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out.reshape(*lead, h, w, 3).numpy()


def step_windows(frames: np.ndarray) -> np.ndarray:
    """Clip frames uint8 [B, 1 + 4n, h, w, 3] -> per-step windows uint8 [B, n, 5, h, w, 3] (frames 4j .. 4j+4)."""
    b, f = frames.shape[:2]
    n = (f - 1) // 4
    if f != 4 * n + 1 or n < 1:
        raise ValueError(f"a clip has 1 + 4n frames (n >= 1), got {f}")
    idx = 4 * np.arange(n)[:, None] + np.arange(WINDOW)[None, :]
    return frames[:, idx]


def to_input(windows: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Windows uint8 [N, 5, h, w, 3] -> float [N, 15, h, w] in [-1, 1]."""
    x = torch.as_tensor(windows).to(device)
    n, k, h, w, c = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(n, k * c, h, w).float().div(127.5).sub(1.0)


def mirror(windows: np.ndarray, keys: np.ndarray, turn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left-right mirrored world: flipped frames, A <-> D swapped, left <-> right turns."""
    keys = keys.copy()
    keys[..., [A_KEY, D_KEY]] = keys[..., [D_KEY, A_KEY]]
    return np.ascontiguousarray(windows[..., ::-1, :]), keys, 2 - turn


# -- the network ----------------------------------------------------------------------------------------------------
class InverseDynamicsProbe(nn.Module):
    """[N, 15, h, w] -> (key logits [N, 4], turn logits [N, 3]).

    The 5 frames enter as the first frame + the 4 frame-to-frame differences (scaled up): motion is what carries
    the action, and handing it over explicitly made the probe generalise to unseen episodes instead of memorising
    them. Four stride-2 convs with GroupNorm, a 3x4 pool that keeps a coarse layout (turning moves everything
    alike, strafing moves near things faster than far ones), dropout, two heads.
    """

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__()
        c = config.width
        chans = [3 * WINDOW, c, 2 * c, 4 * c, 4 * c]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(a, b, k, stride=2, padding=k // 2), nn.GroupNorm(min(8, b), b), nn.GELU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((3, 4)), nn.Flatten())
        self.hidden = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * c * 12, 128), nn.GELU())
        self.keys = nn.Linear(128, 4)
        self.turn = nn.Linear(128, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = x.view(x.shape[0], WINDOW, 3, *x.shape[2:])
        motion = (f[:, 1:] - f[:, :-1]) * 4  # frame differences are small; x4 brings them to the frames' scale
        h = self.hidden(self.features(torch.cat([f[:, 0], motion.flatten(1, 2)], dim=1)))
        return self.keys(h), self.turn(h)


def probe_loss(model: InverseDynamicsProbe, x: torch.Tensor, keys: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    key_logits, turn_logits = model(x)
    return F.binary_cross_entropy_with_logits(key_logits, keys) + F.cross_entropy(turn_logits, turn)


class ProbeTrainer:
    """AdamW steps on batches of windows; ``step`` returns the loss before the update."""

    def __init__(self, model: InverseDynamicsProbe, lr: float, device: torch.device | str = "cpu") -> None:
        self.model, self.device = model, torch.device(device)
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def step(self, windows: np.ndarray, keys: np.ndarray, turn: np.ndarray) -> float:
        self.model.train()
        loss = probe_loss(
            self.model,
            to_input(windows, self.device),
            torch.as_tensor(keys, device=self.device),
            torch.as_tensor(turn, device=self.device),
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class Probe:
    """A trained probe with its settings: ``predict`` on clips, ``save`` / ``load``."""

    def __init__(
        self,
        model: InverseDynamicsProbe,
        config: ProbeConfig,
        frame_size: tuple[int, int],
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.config = model.eval(), config
        self.frame_size = tuple(frame_size)  # the game frame size it was trained on
        self.metrics = metrics or {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, frames: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Clip frames uint8 [B, 1 + 4n, H, W, 3] -> keys bool [B, n, 4], turn int64 [B, n] (0 left, 2 right)."""
        windows = step_windows(downsize(np.asarray(frames, np.uint8), self.config.input_size))
        b, n = windows.shape[:2]
        flat = windows.reshape(b * n, *windows.shape[2:])
        keys, turns = [], []
        self.model.eval()
        for i in range(0, len(flat), batch):
            k, t = self.model(to_input(flat[i : i + batch], self.device))
            keys.append((k > 0).cpu().numpy())
            turns.append(t.argmax(-1).cpu().numpy())
        return np.concatenate(keys).reshape(b, n, 4), np.concatenate(turns).reshape(b, n)

    def save(self, path: str | Path) -> Path:
        """Write the probe as a state file (safetensors + JSON + SHA-256; no pickle), atomically."""
        from world_model.safe_files import save_state_file

        path = Path(path)
        state = {
            "format": FORMAT,
            "config": dataclasses.asdict(self.config),
            "frame_size": list(self.frame_size),
            "metrics": self.metrics,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }
        save_state_file(path, state, FORMAT)
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Probe:
        """Read a file written by :meth:`save`. Pickles (older ``torch.save`` probes) are refused with the command
        that converts them; a corrupt file or a missing key raises an error naming the file."""
        from world_model.safe_files import StateFileError, load_state_file, require_keys

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no probe at {path}: train one with --train-probe")
        state = load_state_file(path, FORMAT, "inverse-dynamics probe")
        require_keys(state, ("format", "config", "frame_size", "state_dict"), path, "inverse-dynamics probe")
        if state.get("format") != FORMAT:
            raise ValueError(f"{path} is not an inverse-dynamics probe ({FORMAT})")
        try:
            cfg = ProbeConfig(**state["config"])
            model = InverseDynamicsProbe(cfg)
            model.load_state_dict(state["state_dict"])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise StateFileError(f"{path}: the probe's weights do not fit its config ({exc})") from exc
        return cls(model.to(device), cfg, tuple(state["frame_size"]), state.get("metrics", {}))


# -- accuracy -------------------------------------------------------------------------------------------------------
def step_scores(keys: np.ndarray, turn: np.ndarray, actions: np.ndarray, dead_zone: float):
    """Per step, predictions (keys bool [B, n, 4], turn [B, n]) against ``actions`` [B, n, 6]: the
    :attr:`ProbeAccuracy.NAMES` scores ``(keys_bitwise float, keys_exact, turn, joint bool)``, each [B, n]."""
    true_keys, true_turn = action_labels(actions, dead_zone)
    bits = keys == (true_keys > 0.5)
    exact = bits.all(-1)
    direction = turn == true_turn
    return bits.mean(-1), exact, direction, exact & direction


class ProbeAccuracy:
    """Accumulates probe predictions against the true actions, per horizon step.

    Scores per step: ``keys_bitwise`` (share of the 4 keys right), ``keys_exact`` (all 4 right), ``turn`` (3-way
    direction right) and ``joint`` (keys exact *and* direction right: the headline, since a model that ignores a
    rare key still scores high bitwise).
    """

    NAMES = ("keys_bitwise", "keys_exact", "turn", "joint")

    def __init__(self, horizon: int, dead_zone: float) -> None:
        self.dead_zone = dead_zone
        self.sums = {k: np.zeros(horizon) for k in self.NAMES}
        self.count = np.zeros(horizon)
        self.excluded = 0

    def update(self, keys: np.ndarray, turn: np.ndarray, actions: np.ndarray, mask: np.ndarray | None = None) -> None:
        """keys bool [B, n, 4], turn [B, n] predicted for ``actions`` [B, n, 6]; only steps where ``mask``
        (bool [B, n], default all) is True count."""
        mask = np.ones(turn.shape, bool) if mask is None else np.asarray(mask, bool)
        for name, ok in zip(self.NAMES, step_scores(keys, turn, actions, self.dead_zone)):
            self.sums[name] += (ok * mask).sum(0)
        self.count += mask.sum(0)
        self.excluded += int((~mask).sum())

    def summary(self) -> dict[str, Any]:
        total = max(float(self.count.sum()), 1.0)
        out: dict[str, Any] = {k: float(v.sum() / total) for k, v in self.sums.items()}
        out["per_step_joint"] = (self.sums["joint"] / np.maximum(self.count, 1)).tolist()
        out["per_step_keys_exact"] = (self.sums["keys_exact"] / np.maximum(self.count, 1)).tolist()
        out["per_step_turn"] = (self.sums["turn"] / np.maximum(self.count, 1)).tolist()
        out["steps_scored"] = int(self.count.sum())
        out["steps_excluded_blocked"] = self.excluded
        return out


def controllability(real: ProbeAccuracy, generated: ProbeAccuracy, probe: Probe) -> dict[str, Any]:
    """Accuracy on real and generated frames of the same clips and their ratio (generated / real) per score."""
    r, g = real.summary(), generated.summary()
    ratio = {k: (g[k] / r[k] if r[k] > 0 else None) for k in ProbeAccuracy.NAMES}
    return {
        "real": r,
        "generated": g,
        "ratio": ratio,
        "headline_ratio": ratio["joint"],
        "probe": {
            "config": dataclasses.asdict(probe.config),
            "trained_frame_size": list(probe.frame_size),
            "train_metrics": probe.metrics,
        },
    }


# -- training data from the real game -------------------------------------------------------------------------------
def random_action(rng: np.random.Generator) -> np.ndarray:
    """A random key combination (none, one key or a diagonal) with a random turn and, rarely, a pitch."""
    combos = ("", "w", "s", "a", "d", "wa", "wd", "sa", "sd")
    keys = combos[int(rng.integers(len(combos)))]
    yaw = 0.0 if rng.random() < 0.35 else float(rng.uniform(-1.0, 1.0))
    pitch = 0.0 if rng.random() < 0.8 else float(rng.uniform(-1.0, 1.0))
    return make_action(w="w" in keys, a="a" in keys, s="s" in keys, d="d" in keys, yaw=yaw, pitch=pitch)


class ProbeTrainingPolicy:
    """The explorer, with segments of ``segment_steps`` steps of one random action mixed in (``random_fraction``).

    The explorer is consulted every step, also during random segments, so its map memory and stuck detection
    keep up with where the player really is.
    """

    def __init__(
        self, seed: int, config: DoomConfig, random_fraction: float, segment_steps: tuple[int, int] = (2, 6)
    ) -> None:
        self.explorer = ExplorationPolicy(seed, action_spec=config.action_spec)
        self.rng = np.random.default_rng([seed, 1])
        self.random_fraction, self.segment_steps = random_fraction, segment_steps
        self.left, self.current = 0, None

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        action = self.explorer(obs, info)
        if self.left <= 0:
            self.left = int(self.rng.integers(self.segment_steps[0], self.segment_steps[1] + 1))
            self.current = random_action(self.rng) if self.rng.random() < self.random_fraction else None
        self.left -= 1
        return action if self.current is None else self.current


@dataclass
class ProbeData:
    """Episodes of downsized real frames: ``frames`` uint8 [1 + 4k, h, w, 3], ``actions`` [k, 6] and the
    ``displacement`` [k] walked per step; only :func:`scorable` steps are indexed."""

    frames: list[np.ndarray]
    actions: list[np.ndarray]
    displacement: list[np.ndarray]

    def __post_init__(self) -> None:
        self.index = np.array(
            [
                (e, j)
                for e, (a, d) in enumerate(zip(self.actions, self.displacement))
                for j in np.flatnonzero(scorable(a, d))
            ],
            dtype=np.int64,
        ).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows: np.ndarray, dead_zone: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples ``rows`` -> windows uint8 [N, 5, h, w, 3], keys float32 [N, 4], turn int64 [N]."""
        windows = np.stack([self.frames[e][4 * j : 4 * j + WINDOW] for e, j in self.index[rows]])
        keys, turn = action_labels(self.step_actions(rows), dead_zone)
        return windows, keys, turn

    def step_actions(self, rows: np.ndarray) -> np.ndarray:
        """float32 [N, 6]: the actions of samples ``rows``."""
        return np.stack([self.actions[e][j] for e, j in self.index[rows]])


def collect_probe_data(
    game: DoomConfig, maps: tuple[str, ...], steps: int, cfg: ProbeConfig, seed: int, progress: bool = False
) -> ProbeData:
    """Play ``steps`` steps on ``maps`` (episodes of ``cfg.episode_steps``) in one game process (determinism
    across processes does not matter here, only variety)."""
    from tqdm.auto import tqdm

    from distillation.evaluation.game import EpisodeEnded, fresh_game, play, step_displacement

    rng = np.random.default_rng([cfg.seed, seed])
    frames, actions, moved = [], [], []
    bar = tqdm(total=steps, desc="probe data", unit="step", disable=not progress, leave=False)
    made = 0
    with fresh_game(game) as env:
        while made < steps:
            k = min(cfg.episode_steps, steps - made)
            ep_seed = int(rng.integers(0, 2**31 - 1))
            obs, info = env.reset(seed=ep_seed, options={"map": str(rng.choice(maps))})
            policy = ProbeTrainingPolicy(ep_seed, game, cfg.random_fraction, cfg.segment_steps)
            try:
                f, poses, a = play(env, obs, info, policy, k)
            except EpisodeEnded:
                continue  # a level exit mid-episode: drop it, draw another
            frames.append(downsize(np.concatenate([obs[None], f]), cfg.input_size))
            actions.append(a)
            moved.append(step_displacement(np.concatenate([info["pose"][None], poses])))
            made += k
            bar.update(k)
    bar.close()
    return ProbeData(frames, actions, moved)


def evaluate_on_data(probe: Probe, data: ProbeData) -> dict[str, float]:
    """Accuracy of ``probe`` on every step of ``data`` (already downsized)."""
    acc = ProbeAccuracy(1, probe.config.dead_zone)
    for start in range(0, len(data), 256):
        rows = np.arange(start, min(start + 256, len(data)))
        windows, _, _ = data.batch(rows, probe.config.dead_zone)
        with torch.no_grad():
            k, t = probe.model.eval()(to_input(windows, probe.device))
        actions = data.step_actions(rows)
        acc.update((k > 0).cpu().numpy()[:, None], t.argmax(-1).cpu().numpy()[:, None], actions[:, None])
    s = acc.summary()
    return {k: s[k] for k in ProbeAccuracy.NAMES}


def train_probe(
    game: DoomConfig,
    maps: tuple[str, ...],
    cfg: ProbeConfig,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Probe:
    """Collect real training-map data and train a probe on it; held-out probe metrics go to ``probe.metrics``."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    train = collect_probe_data(game, maps, cfg.data_steps, cfg, seed=0, progress=progress)
    val = (
        collect_probe_data(game, maps, cfg.val_data_steps, cfg, seed=1, progress=progress)
        if cfg.val_data_steps
        else None
    )
    t_data = time.perf_counter() - t0
    model = InverseDynamicsProbe(cfg).to(device)
    trainer = ProbeTrainer(model, cfg.lr, device)
    rng = np.random.default_rng([cfg.seed, 2])
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc="probe", unit="step", disable=not progress)
    for step in bar:
        # Cosine decay: the last steps settle instead of bouncing around with the full learning rate.
        for g in trainer.opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / max(cfg.steps, 1)))
        windows, keys, turn = train.batch(rng.integers(0, len(train), cfg.batch_size), cfg.dead_zone)
        flip = rng.random(len(keys)) < 0.5
        if flip.any():
            windows[flip], keys[flip], turn[flip] = mirror(windows[flip], keys[flip], turn[flip])
        losses.append(trainer.step(windows, keys, turn))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    probe = Probe(model, cfg, game.output_size)
    metrics: dict[str, Any] = {
        "train_steps": cfg.steps,
        "train_samples": len(train),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "train_accuracy": evaluate_on_data(probe, train),
        "maps": list(maps),
        "data_seconds": t_data,
        "seconds": time.perf_counter() - t0,
    }
    if val is not None:
        metrics["heldout_episode_accuracy"] = evaluate_on_data(probe, val)
    probe.metrics = metrics
    return probe
