"""Learned step heads: what the real game would report about a step, read from the world's latent frames.

A world bundle may carry a :class:`StepHeads` next to its DiT. At every env step it sees the latent frame before
the step and the one the step generated (``[B, 16, h, w]`` each, the VAE's normalised latents) and the action
(``[B, 6]``), and predicts

* ``motion`` ``[B, 2]``: how far the player moved during the step, in Doom map units, as (forward, right) in the
  player's frame at the start of the step. Walls stop a player in the game, and a world that holds its scene
  shows it: the head learns that from the frames, not from the keys alone;
* ``end_logit`` ``[B]``: the logit that the episode ended during the step (the player died).

The env turns ``motion`` into the task's exploration reward (+1 per newly entered map cell, as the game counts
it; :class:`lingbot_env.rewards.LearnedExploreReward`) and, when the config's ``terminates`` is set,
``end_logit > 0`` into ``terminated``. The heads are
trained on real game data with the game's own labels (``agents.train_heads``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class StepHeadsConfig:
    latent_channels: int = 16  # the VAE's latent channels
    action_dim: int = 6  # [W, A, S, D, yaw, pitch]
    width: int = 32  # channels of the first conv (x2 after each stride): ~120k parameters, 0.25 MB in bf16
    hidden: int = 128  # MLP width
    motion_scale: float = 32.0  # map units per output unit (a run step is ~25 units), so outputs are O(1)
    explore_cell: float = 64.0  # the task's reward cell (map units) the env counts the heads' motion in
    # Whether ``end_logit > 0`` ends an env episode. The trainer sets it from the end head's held-out recall and
    # false alarms (:func:`end_head_trusted`): a head that fires falsely would cut most episodes short.
    terminates: bool = True


class StepHeads(nn.Module):
    """``(prev [B, C, h, w], cur [B, C, h, w], action [B, 6]) -> (motion [B, 2] map units, end_logit [B])``.

    The two frames and their difference go through three 3x3 convs (the last two strided) and a global mean,
    then an MLP together with the action."""

    def __init__(self, cfg: StepHeadsConfig = StepHeadsConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c, w = cfg.latent_channels, cfg.width
        self.convs = nn.Sequential(
            nn.Conv2d(3 * c, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.mlp = nn.Sequential(
            nn.Linear(4 * w + cfg.action_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU()
        )
        self.motion = nn.Linear(cfg.hidden, 2)
        self.end = nn.Linear(cfg.hidden, 1)

    def forward(self, prev: torch.Tensor, cur: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([prev, cur, cur - prev], dim=1).float()
        feat = self.convs(x).mean(dim=(2, 3))
        h = self.mlp(torch.cat([feat, action.float()], dim=1))
        return self.motion(h) * self.cfg.motion_scale, self.end(h).squeeze(1)

    def losses(
        self, prev: torch.Tensor, cur: torch.Tensor, action: torch.Tensor, motion: torch.Tensor, ended: torch.Tensor,
        end_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Training losses against the game's labels: ``motion`` ``[B, 2]`` map units, ``ended`` ``[B]`` 0/1.
        Huber on the motion (in output units), BCE on the end logit with ``end_weight`` on the positives (rare)."""
        m, logit = self(prev, cur, action)
        s = self.cfg.motion_scale
        motion_loss = F.smooth_l1_loss(m / s, motion.float() / s)
        pos = torch.tensor(end_weight, device=logit.device)
        end_loss = F.binary_cross_entropy_with_logits(logit, ended.float(), pos_weight=pos)
        return {"loss": motion_loss + end_loss, "motion": motion_loss, "end": end_loss}


HEADS_FILE, HEADS_CONFIG = "heads.safetensors", "heads.json"

# An end head earns the right to end episodes when it finds at least this share of the held-out deaths ...
END_MIN_RECALL = 0.5
# ... and would end at most this share of episodes of the task's length falsely (false alarms per step x steps).
END_MAX_FALSE_ENDS = 0.1


def end_head_trusted(recall: float, false_alarm_rate: float, episode_steps: int) -> bool:
    """Whether an end head with these held-out scores should terminate episodes of ``episode_steps`` steps."""
    return recall >= END_MIN_RECALL and false_alarm_rate * episode_steps <= END_MAX_FALSE_ENDS


def save_heads(heads: StepHeads, folder: str | os.PathLike, vae_fingerprint: str, metrics: dict | None = None) -> None:
    """``heads.safetensors`` + ``heads.json`` (config, the fingerprint of the latents it reads, its scores)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # bf16 like the rest of a bundle (the heads are read at that precision: well inside their label noise)
    sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in heads.state_dict().items()}
    tmp = folder / (HEADS_FILE + ".tmp")
    save_file(sd, tmp)
    os.replace(tmp, folder / HEADS_FILE)
    meta = {"config": dataclasses.asdict(heads.cfg), "vae_fingerprint": vae_fingerprint, "metrics": metrics or {}}
    (folder / HEADS_CONFIG).write_text(json.dumps(meta, indent=1))


def load_heads(folder: str | os.PathLike, vae_fingerprint: str | None = None) -> StepHeads:
    """The heads of ``folder``; refused with a clear error when they read other latents than ``vae_fingerprint``
    (the world's) or their weights do not fit their config."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / HEADS_CONFIG).read_text())
    theirs = meta.get("vae_fingerprint")
    if vae_fingerprint is not None and theirs != vae_fingerprint:
        raise ValueError(
            f"{folder / HEADS_CONFIG}: the step heads read latents of VAE {theirs}, but this world's latents are "
            f"{vae_fingerprint}: train heads on this world's latents (python -m agents.train_heads)"
        )
    heads = StepHeads(StepHeadsConfig(**meta["config"]))
    try:
        heads.load_state_dict(load_file(folder / HEADS_FILE))
    except RuntimeError as exc:
        raise ValueError(f"{folder / HEADS_FILE}: weights do not fit {HEADS_CONFIG} ({exc})") from exc
    return heads.eval()
