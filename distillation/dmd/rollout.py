"""The student's rollouts during training, through the same :class:`~world_model.streaming.StreamingGenerator`
that the env runs (KV cache, rolling window + sink, cache pass at ``t = 0``): there is no second inference path.

* :func:`self_rollout` (DMD, Self-Forcing): the student generates every latent frame from its own previous ones;
  for the frames that train, the few-step schedule stops at the drawn exit step and only that pass keeps
  gradients; frames before them (a long rollout's warm-up) run the whole schedule without gradients.
* :func:`teacher_forced` (ODE init): each frame is denoised from the teacher's trajectory state while the cache
  holds the teacher's clean frames before it, so the student learns the mapping it will run at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from world_model.dit import WanDiT
from world_model.sampling import NUM_TRAIN_TIMESTEPS
from world_model.streaming import StreamConfig, StreamingGenerator


@dataclass
class Conditions:
    """One batch of what a rollout starts from. ``first_latent`` ``[B, 16, 1, h, w]``; ``control``
    ``[B, C, 1 + n, h, w]`` (frame 0 the identity, frame ``i`` action ``i - 1``); ``context`` the caption
    features ``[B, L, text_dim]``; ``actions`` ``[B, n, 6]`` and ``captions`` as given; ``seeds`` per row."""

    first_latent: torch.Tensor
    control: torch.Tensor
    context: torch.Tensor
    actions: torch.Tensor
    captions: list[str]
    seeds: list[int]

    @property
    def frames(self) -> int:
        return self.actions.shape[1]


def start(student: WanDiT, stream: StreamConfig, cond: Conditions) -> StreamingGenerator:
    """A generator primed on the batch's start latents (the image written alone into the cache, as the env does)."""
    gen = StreamingGenerator(student, stream)
    gen.prime(cond.first_latent, cond.context, control=cond.control[:, :, :1], seeds=cond.seeds)
    return gen


def self_rollout(
    student: WanDiT,
    stream: StreamConfig,
    cond: Conditions,
    exit_step: int | None = None,
    grad_frames: int = 0,
) -> torch.Tensor:
    """Roll the student out for ``cond.frames`` latent frames: ``[B, 16, n, h, w]``.

    The last ``grad_frames`` frames stop at ``exit_step`` (None: the last step) and keep gradients; the others
    run the whole schedule without. ``grad_frames=0`` with ``exit_step=None`` is exactly inference."""
    gen = start(student, stream, cond)
    n = cond.frames
    out = []
    for i in range(n):
        control = cond.control[:, :, 1 + i : 2 + i]
        if i >= n - grad_frames:
            last = len(stream.schedule.timesteps) - 1
            out.append(gen.training_step(control, last if exit_step is None else exit_step))
        else:
            out.append(gen.step(control))
    gen.reset()
    return torch.cat(out, dim=2)


def teacher_forced(
    student: WanDiT,
    stream: StreamConfig,
    cond: Conditions,
    noisy: torch.Tensor,
    sigma: torch.Tensor,
    clean: torch.Tensor,
) -> torch.Tensor:
    """The student's ``x0`` estimates ``[B, 16, n, h, w]`` (with gradients) of frames ``noisy`` ``[B, 16, n, h, w]``
    at noise levels ``sigma`` ``[B, n]``, frame ``i`` seeing the cache of ``clean`` frames ``0 .. i - 1``
    (``[B, 16, n, h, w]``, the teacher's sample) after the start latent."""
    gen = start(student, stream, cond)
    out = []
    for i in range(cond.frames):
        ctrl = student.prepare_control(cond.control[:, :, 1 + i : 2 + i])
        x, s = noisy[:, :, i : i + 1], sigma[:, i]
        v = gen.velocity(x, s * NUM_TRAIN_TIMESTEPS, ctrl)
        out.append(x.float() - s.view(-1, 1, 1, 1, 1) * v)
        gen.append(clean[:, :, i : i + 1], ctrl)
    gen.reset()
    return torch.cat(out, dim=2)
