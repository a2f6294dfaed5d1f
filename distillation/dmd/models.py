"""The three networks of distillation and the checks that they fit together.

* **teacher**: the frozen bidirectional :class:`~world_model.dit.WanDiT` (any config; read from its export);
* **student**: the same class run block-causally with a KV cache (``world_model.streaming``), initialised from
  the teacher's weights when the configs are equal;
* **critic** (DMD's "fake score"): a bidirectional copy, initialised from the teacher or the student, trained
  with flow matching on the student's samples; or (``lora``) the frozen teacher's weights, shared, plus LoRA
  adapters (:mod:`distillation.training.lora`), the only part trained, checkpointed and exported.

Nothing here knows Doom: the configs come from the exports, and :func:`check_fits` says before any training why a
student cannot stand in for a teacher.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from distillation.teacher import (
    ClipConditioner,
    encode_text,
    export_config,
    guides_actions,
    load_export_dit,
    load_teacher_export,
)
from distillation.training.lora import (
    DEFAULT_TARGETS,
    LoRASpec,
    add_lora,
    is_lora_export,
    load_lora_export_,
    merge_lora,
    read_lora_spec,
    shared_copy,
)
from world_model.checkpoints.text_encoders import SmallTextEncoder
from world_model.config import WanDiTConfig
from world_model.dit import PreparedContext, WanDiT

# What the student's inputs and outputs share with the teacher: the DMD losses feed one's samples to the other.
INTERFACE = ("in_dim", "out_dim", "text_dim", "text_len", "control_dim", "control_patch", "patch_size")


def check_fits(student: WanDiTConfig, teacher: WanDiTConfig) -> None:
    """Raise ``ValueError`` naming every field where a student of config ``student`` cannot take the teacher's
    inputs or produce what the teacher scores (latent channels, condition, text, control, patch)."""
    bad = {
        k: (getattr(student, k), getattr(teacher, k)) for k in INTERFACE if getattr(student, k) != getattr(teacher, k)
    }
    if bad:
        raise ValueError(
            f"the student config does not fit the teacher: {bad} (student, teacher). A student may differ in width "
            "and depth, but must share these with the teacher it is distilled from"
        )


def check_latents(what: str, recorded: str | None, expected: str | None, against: str) -> None:
    """Refuse to pair two parts trained on different VAE latents (``vae_fingerprint`` records)."""
    if recorded and expected and recorded != expected:
        raise ValueError(
            f"{what} was trained on the latents of VAE {recorded}, but {against} has latents of VAE {expected}: "
            "they do not fit together. Use the VAE (and conditions) the teacher was trained with, or retrain"
        )


def recorded_fingerprint(folder: str | Path) -> str | None:
    """The ``vae_fingerprint`` an export's ``result.json`` records (None if it records none)."""
    result = Path(folder) / "result.json"
    return json.loads(result.read_text()).get("vae_fingerprint") if result.exists() else None


@dataclass
class Teacher:
    """The frozen teacher and what conditions it: text encoder (shared, frozen, by the student) and control."""

    dit: WanDiT
    text: SmallTextEncoder
    cond: ClipConditioner
    step: int
    fingerprint: str | None
    guide_actions: bool

    def context(self, captions: list[str]) -> torch.Tensor:
        """Caption features ``[B, text_len, text_dim]`` (no gradients: the text encoder stays frozen)."""
        with torch.no_grad():
            return encode_text(self.text, captions)

    def prepared(self, dit: WanDiT, captions: list[str]) -> PreparedContext:
        return dit.prepare_context(self.context(captions))


def load_teacher(folder: str | Path, device: torch.device | str) -> Teacher:
    """The teacher export in ``folder`` (config from its ``config.json``), frozen, in eval mode."""
    dit, text, step = load_teacher_export(folder, device)
    for m in (dit, text):
        m.requires_grad_(False)
    return Teacher(dit, text, ClipConditioner(device), step, recorded_fingerprint(folder), guides_actions(folder))


def make_student(teacher: Teacher, config: WanDiTConfig | None = None, share: bool = False) -> WanDiT:
    """The student: the teacher's weights when ``config`` is None or equal to the teacher's, else a fresh model of
    ``config`` (checked by :func:`check_fits`). With ``share`` (a student that trains LoRA adapters only) it is
    the teacher's weights themselves, frozen (:func:`~distillation.training.lora.shared_copy`): nothing may then
    write into them, not even an ``--init-from`` load."""
    tcfg = teacher.dit.cfg
    if share:
        if config is not None and config != tcfg:
            raise ValueError("a student sharing the teacher's weights must have the teacher's config")
        return shared_copy(teacher.dit).train()
    if config is None or config == tcfg:
        student = copy.deepcopy(teacher.dit)
    else:
        check_fits(config, tcfg)
        student = WanDiT(config).to(teacher.dit.device)
    student.requires_grad_(True)
    return student.train()


def make_critic(
    teacher: Teacher,
    student: WanDiT,
    init: str = "teacher",
    lora: int = 0,
    alpha: float | None = None,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
) -> WanDiT:
    """DMD's fake-score network: a trainable copy of the teacher (default) or of the student (``init``).

    With ``lora`` > 0 (the adapters' rank) it is instead that network's weights, frozen, plus LoRA adapters (of
    ``alpha``, on ``targets``), the only trained parameters. A frozen base (the teacher; a student that trains
    adapters only) is shared, not copied: the critic's adapters sit on modules of its own, so the base network's
    own forward stays adapter-free. A base that trains (a full student) is copied as it is now, and frozen."""
    if init not in ("teacher", "student"):
        raise ValueError(f"critic init must be 'teacher' or 'student', got {init!r}")
    base = teacher.dit if init == "teacher" else student
    if lora <= 0:
        critic = copy.deepcopy(base)
        critic.requires_grad_(True)
        return critic.train()
    trains = any(p.requires_grad for p in base.parameters())
    critic = (copy.deepcopy(base) if trains else shared_copy(base)).requires_grad_(False)
    add_lora(critic, lora, alpha, targets)
    return critic.train()


def load_critic_export(
    folder: str | Path, critic: WanDiT, lora: LoRASpec | None, base: Callable[[], tuple[str, str]]
) -> int:
    """Start ``critic`` from an export (``--critic-from``); the export's step.

    A full critic export loads into a full critic; an adapter export (``lora.json``) into a critic with adapters
    of spec ``lora``, or, into a full critic, folded into its weights (the critic is then the base plus the
    adapters). ``base()`` gives ``(fingerprint, folder)`` of the critic's base weights: adapters trained on
    another base are refused. A full export cannot start an adapter critic (its base is shared and frozen)."""
    folder = Path(folder)
    if is_lora_export(folder):
        if lora is not None:
            return int(load_lora_export_(critic, folder, lora).get("step", 0))
        saved, _ = read_lora_spec(folder)
        adapted = shared_copy(critic)  # the critic's own weights, wrapped; merging writes new tensors
        add_lora(adapted, saved.rank, saved.alpha, saved.targets)
        fingerprint, name = base()
        info = load_lora_export_(adapted, folder, dataclasses.replace(saved, base=fingerprint, base_name=name))
        critic.load_state_dict(merge_lora(adapted).state_dict())
        return int(info.get("step", 0))
    if lora is not None:
        raise ValueError(
            f"{folder} holds a full critic, but --critic-lora {lora.rank} makes the critic the frozen base plus "
            f"adapters: pass an adapter export (a folder with lora.json), or drop --critic-lora to start a full "
            "critic from it"
        )
    return load_export_dit(folder, critic)


def student_config_from(path: str) -> WanDiTConfig | None:
    """A student config from an export folder or a ``config.json`` path; None for ``""`` (the teacher's)."""
    if not path:
        return None
    p = Path(path)
    return export_config(p if p.is_dir() else p.parent)
