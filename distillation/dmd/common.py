"""What the training stages of distillation share: their common config, data parallelism, batches, validation,
checkpoints and export.

Batches are drawn *deterministically* from ``(seed, step, micro-batch index)``: micro-batch ``j`` of a step is
the same rows with the same noise whichever process computes it, so ``torchrun --nproc_per_node N`` with ``A``
accumulation steps takes the same update as one process with ``N * A`` accumulation steps, and a resumed run
draws exactly what the killed one would have.

Data parallelism over ``torchrun`` processes comes in two kinds (``--parallel``), which take the same update:

* ``ddp`` (the default; small models): every process holds the whole student (and critic), their gradients,
  optimizer states and EMA; the gradients are summed with one all-reduce per parameter after the micro-batches.
  Use it while a full copy of everything trained fits one device: it is the simplest and communicates least.
* ``fsdp`` (large models): FSDP2 (``torch.distributed.fsdp.fully_shard``) shards the trained networks per DiT
  block and at the root, so weights, gradients, AdamW moments and the EMA are split over the processes (about
  ``1 / N`` of each per device); a block's weights are all-gathered for each pass through it and its gradients
  reduce-scattered after the backward (once per update: the non-final micro-batches keep theirs unreduced). The
  frozen teacher is sharded the same way. Use it when the student, critic, their optimizer states and the EMA
  do not fit one device beside the activations. It pays an all-gather per block per pass (a rollout makes many).

Checkpoints hold full (unsharded) state dicts in one layout whichever kind wrote them, so a run started under
one resumes under the other or in one process; under ``fsdp`` all processes gather them and the main one writes.
Validation and export run on the main process, under ``fsdp`` on a full copy gathered from the shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist

from distillation.dmd.models import Teacher
from distillation.dmd.rollout import Conditions, self_rollout
from distillation.dmd.shards import read_set
from distillation.evaluation.sharpness import sharpness_ratio
from distillation.teacher import latent_decoder
from distillation.training.checkpoint import save_state
from distillation.training.metrics import psnr
from world_model.checkpoints.saving import save_checkpoint
from world_model.dit import WanDiT
from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig
from world_model.world import to_uint8


@dataclasses.dataclass
class StageConfig:
    """Settings every training stage has."""

    teacher: str = "checkpoints/doom_teacher"  # the teacher export folder (distillation.train_teacher)
    conditions: str = "runs/dmd/conditions"  # training conditions set (python -m distillation.dmd conditions)
    val_conditions: str = ""  # a validation conditions set with real latents (--real-latents); "" skips validation
    light_decoder: str = ""  # a light decoder .pt: validation also scores decoded frames
    out: str = "runs/dmd"  # run folder: <stage>/checkpoint.pt, log.jsonl, export/
    batch_size: int = 32  # clips per micro-batch (per process)
    accumulate: int = 1  # micro-batches per update (gradient accumulation)
    lr: float = 2e-5  # peak AdamW learning rate of the student (DMD's: not yet tuned on the GPU)
    warmup: int = 50  # steps of linear warm-up (again after a start from an export)
    cooldown: float = 0.0  # fraction of --max-minutes at the end over which the rate falls to 5%
    ema: float = 0.99  # EMA decay of the exported student
    grad_clip: float = 1.0  # gradient norm clip
    max_steps: int = 100_000  # stop at this step (the time budget usually ends a run first)
    max_minutes: float | None = None  # time budget: the run checkpoints, validates and exports before it ends
    log_every: int = 10  # steps between log.jsonl records
    val_every: int = 200  # steps between validations (0: only at the end)
    val_clips: int = 32  # validation clips
    checkpoint_every: int = 200  # steps between checkpoints (one is always written at the end)
    timesteps: str = "1000,750,500,250"  # the student's few-step list before the shift (Self-Forcing's)
    shift: float = 3.0  # the teacher's timestep shift (warps the student's list and the noise levels drawn)
    # how a generated frame becomes the student's context: "clean" (one more pass at t = 0 on the result) or
    # "last_pass" (the last denoising pass writes it: one DiT pass fewer per frame at inference; the rollouts of
    # training write it the same way, so the student learns to read it)
    cache_write: Literal["clean", "last_pass"] = "clean"
    window_frames: int = 8  # the student's rolling KV window (latent frames)
    sink_frames: int = 1  # frames kept in the cache forever (the start frame)
    grad_checkpointing: bool = False  # recompute DiT blocks in backward (less memory, more compute)
    seed: int = 0  # seed of the data draws and the noise
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # where to train
    # data parallelism over torchrun processes: "ddp" keeps a whole copy of the trained networks in every process
    # and averages their gradients (small models); "fsdp" shards weights, gradients, optimizer states and EMA (and
    # the frozen teacher) over the processes with FSDP2, per DiT block (large models). The same update either way;
    # one process ignores it; a checkpoint written under either resumes under the other
    parallel: Literal["ddp", "fsdp"] = "ddp"


def student_schedule(timesteps: str, shift: float) -> FewStepSchedule:
    """The student's few-step schedule from a comma-separated list before the shift (``"1000,750,500,250"``)."""
    try:
        ts = [float(t) for t in timesteps.split(",")]
    except ValueError:
        raise ValueError(
            f"timesteps must be comma-separated numbers such as 1000,750,500,250, got {timesteps!r}"
        ) from None
    return FewStepSchedule.warped(ts, shift=shift)


def stream_config(cfg: StageConfig) -> StreamConfig:
    """The student's streaming layout: one latent frame per step, the image alone in the first block."""
    schedule = student_schedule(cfg.timesteps, cfg.shift)
    cache = CacheConfig("rolling", window_frames=cfg.window_frames, sink_frames=cfg.sink_frames)
    return StreamConfig(
        block_frames=1, first_block_frames=1, schedule=schedule, cache=cache, cache_write=cfg.cache_write
    )


# -- data parallelism ----------------------------------------------------------------------------------------------
PARALLEL = ("ddp", "fsdp")


@dataclasses.dataclass(frozen=True)
class Parallel:
    """This process's place among ``world`` processes (``torchrun`` sets RANK / WORLD_SIZE) and how they share the
    work: ``mode`` "ddp" (replicas, gradients all-reduced here) or "fsdp" (FSDP2 shards; see the module doc)."""

    rank: int = 0
    world: int = 1
    mode: str = "ddp"
    device_type: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether the trained networks are FSDP2-sharded (``fsdp`` with more than one process)."""
        return self.mode == "fsdp" and self.world > 1

    def micro_batches(self, accumulate: int) -> list[int]:
        """Global micro-batch indices this process computes in one update."""
        return [self.rank + self.world * a for a in range(accumulate)]

    def shard(self, *modules: WanDiT) -> None:
        """Under ``fsdp``, shard each DiT in place with ``fully_shard``: every block, then the root (the
        embeddings and the head); a no-op otherwise. The methods that use a block's or the root's weights outside
        ``forward`` (text and control preparation) gather them too. Shard a module before building its optimizer
        (which must see the sharded parameters) and after any ``deepcopy`` of it."""
        if not self.sharded:
            return
        try:
            from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
        except ImportError as exc:  # torch < 2.6 has FSDP2 only under a private name
            raise RuntimeError(f"--parallel fsdp needs torch >= 2.6 (FSDP2 fully_shard): {exc}") from None
        from torch.distributed.device_mesh import init_device_mesh

        # FSDP2 warns that a sharded module returned a view (a later in-place op on it would skip its hooks):
        # the DiT's outputs (velocities, text K/V, control scale/shift) are only ever read.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPWan\w+\) returned a view tensor")
        mesh = init_device_mesh(self.device_type, (self.world,))
        for m in modules:
            for blk in m.blocks:
                fully_shard(blk, mesh=mesh)
                for name in ("cross_key_value", "control"):
                    register_fsdp_forward_method(blk, name)
            fully_shard(m, mesh=mesh)
            for name in ("prepare_context", "prepare_control"):
                register_fsdp_forward_method(m, name)

    def sync_gradients(self, modules: list[torch.nn.Module], sync: bool) -> None:
        """Under ``fsdp``, whether the next backward reduce-scatters the gradients (``sync``: the update's last
        micro-batch) or keeps accumulating them unreduced; a no-op otherwise (:meth:`average_gradients` reduces)."""
        if self.sharded:
            for m in modules:
                m.set_requires_gradient_sync(sync)

    def average_gradients(self, modules: list[torch.nn.Module], total_micro: int) -> None:
        """Sum the gradients over processes and divide by the number of micro-batches of the update (each
        process accumulated its own as a sum). Under ``fsdp`` the reduce-scatter of the last backward already
        averaged the sums over the processes: only the division by the micro-batches per process is left."""
        divide = total_micro / self.world if self.sharded else total_micro
        for m in modules:
            for p in m.parameters():
                if p.grad is None:
                    continue
                if self.world > 1 and not self.sharded:
                    dist.all_reduce(p.grad)
                p.grad.div_(divide)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # -- checkpoints and full copies -----------------------------------------------------------------------------
    def state_of(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None):
        """What a checkpoint saves of ``module`` (or, given, of its ``optimizer``): the object itself unsharded,
        under ``fsdp`` a :class:`FullState` that gathers and scatters full state dicts of the same layout."""
        if not self.sharded:
            return module if optimizer is None else optimizer
        return FullState(module, optimizer)

    def full_model(self, module: WanDiT) -> WanDiT | None:
        """``module`` whole, on the main process: itself unsharded; under ``fsdp`` (all processes must call it)
        an unsharded copy on its device gathered from the shards, in eval mode, and None on the other processes."""
        if not self.sharded:
            return module
        state = FullState(module).state_dict()
        if not self.main:
            return None
        with torch.device("meta"):
            copy = WanDiT(module.cfg)
        copy.load_state_dict(state, assign=True)
        return copy.to(module.device).eval().requires_grad_(False)


class FullState:
    """The checkpoint part of an FSDP-sharded module (or of its optimizer) in the layout of the unsharded one:
    ``state_dict()`` gathers the full state onto the main process's CPU (all processes call it; the others get an
    empty dict), ``load_state_dict`` takes a full one in every process and keeps each process's shards. Optimizer
    states are keyed by parameter index as ``torch.optim.Optimizer.state_dict`` keys them (one parameter group),
    not by name as ``torch.distributed.checkpoint`` does, so that checkpoints written under ``ddp`` or by one
    process load here and vice versa."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.module, self.optimizer = module, optimizer
        self.names = [n for n, _ in module.named_parameters()]
        if optimizer is not None:
            mine = [id(p) for g in optimizer.param_groups for p in g["params"]]
            if mine != [id(p) for p in module.parameters()]:
                raise ValueError("the optimizer must hold exactly the module's parameters, in their order")

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if self.optimizer is None:
            return get_model_state_dict(self.module, options=options)
        state = get_optimizer_state_dict(self.module, self.optimizer, options=options)
        if not state:  # not the main process
            return state
        index = {n: i for i, n in enumerate(self.names)}
        return {
            "state": {index[n]: s for n, s in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        if self.optimizer is None:
            set_model_state_dict(self.module, state, options=StateDictOptions(full_state_dict=True))
            return
        if len(state["param_groups"]) != 1 or len(state["param_groups"][0]["params"]) != len(self.names):
            raise ValueError(
                f"the optimizer state has {len(state['param_groups'])} parameter group(s) of "
                f"{[len(g['params']) for g in state['param_groups']]} parameters; this run has one of {len(self.names)}"
            )
        by_name = {
            "state": {self.names[i]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [self.names[i] for i in g["params"]]} for g in state["param_groups"]],
        }
        # Parameters that never had a gradient (the cross-attention K/V of a student fed prepared text) have no
        # state, which torch.distributed.checkpoint only accepts unstrict; it gives them a fresh one, dropped here
        # so that the optimizer is as an unsharded one loading the same state would be.
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_optimizer_state_dict(self.module, self.optimizer, by_name, options=options)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            if i not in state["state"]:
                self.optimizer.state.pop(p, None)
        for group, saved in zip(self.optimizer.param_groups, state["param_groups"]):  # as saved: betas a tuple
            group.update({k: v for k, v in saved.items() if k != "params"})


def init_parallel(device: str, mode: str = "ddp") -> tuple[Parallel, torch.device]:
    """Join the process group when started by ``torchrun`` (gloo on CPU, NCCL on GPUs; one GPU per process).
    ``mode`` is ``--parallel``: "ddp" or "fsdp" (see :class:`Parallel`)."""
    if mode not in PARALLEL:
        raise ValueError(f"--parallel must be one of {', '.join(PARALLEL)}, got {mode!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Parallel(mode=mode, device_type=torch.device(device).type), torch.device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Parallel(rank, world, mode, dev.type), dev


# -- batches -------------------------------------------------------------------------------------------------------
def mix_seed(*parts: int) -> int:
    """A seed from integers, the same in every process (Python's ``hash`` of strings is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:7], "little")


def step_generator(seed: int, step: int, micro: int, device: torch.device) -> torch.Generator:
    """The generator of micro-batch ``micro`` of ``step``: its noise depends on nothing else."""
    return torch.Generator(device=device).manual_seed(mix_seed(seed, step, micro))


def draw_rows(n_rows: int, size: int, seed: int, step: int, micro: int) -> torch.Tensor:
    """The rows of micro-batch ``micro`` of ``step`` among ``n_rows``."""
    g = torch.Generator().manual_seed(mix_seed(seed, step, micro, 1))
    return torch.randint(0, n_rows, (size,), generator=g)


def conditions_of(
    teacher: Teacher, tensors: dict[str, torch.Tensor], captions: list[str], rows: torch.Tensor, frames: int, seed: int
) -> Conditions:
    """The :class:`Conditions` of ``rows`` of a loaded set, with their first ``frames`` actions."""
    dev = teacher.dit.device
    idx = rows.tolist()
    actions = tensors["actions"][rows, :frames].to(dev).float()
    if actions.shape[1] < frames:
        raise ValueError(f"the conditions hold {actions.shape[1]} actions per clip; this stage needs {frames}")
    caps = [captions[i] for i in idx]
    return Conditions(
        first_latent=tensors["first_latent"][rows].to(dev).float(),
        control=teacher.cond.control(actions),
        context=teacher.context(caps),
        actions=actions,
        captions=caps,
        seeds=[mix_seed(seed, i) for i in idx],
    )


# -- validation ----------------------------------------------------------------------------------------------------
def latent_gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean gradient energy of latents ``[B, C, F, h, w]``: squared finite differences along h and w, averaged
    over everything (the latent counterpart of ``distillation.evaluation.sharpness.gradient_energy``)."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return 0.5 * (dx.pow(2).mean() + dy.pow(2).mean())


@torch.no_grad()
def validate(student: WanDiT, stream: StreamConfig, teacher: Teacher, val: tuple, cfg: StageConfig, decode=None):
    """Roll the student out (inference, 8 frames) on the validation clips and compare with the real clips'
    latents: latent PSNR over frames 1-4 (the first 16 video frames) and 1-8, and the sharpness ratio (mean
    gradient energy of the student's latents over the real ones', a ratio of means as the harness takes it); with
    ``decode`` (a light decoder) PSNR and the harness's sharpness ratio of the decoded frames against the real
    latents decoded by it."""
    tensors, captions = val
    n = min(cfg.val_clips, len(captions))
    real = tensors["latents"][:n].to(student.device).float()
    frames = real.shape[2] - 1
    cond = conditions_of(teacher, tensors, captions, torch.arange(n), frames, seed=12345)
    was_training = student.training
    student.eval()
    gen = torch.cat([cond.first_latent, self_rollout(student, stream, cond)], dim=2)
    student.train(was_training)

    def lat_psnr(a, b):  # latents are unit-scale: a peak-to-peak of 2 as for images in [-1, 1]
        return psnr(a, b).mean().item()

    sharpness = latent_gradient_energy(gen[:, :, 1:5]) / latent_gradient_energy(real[:, :, 1:5])
    out = {
        "val_latent_psnr_4": lat_psnr(gen[:, :, 1:5], real[:, :, 1:5]),
        "val_latent_psnr_all": lat_psnr(gen[:, :, 1:], real[:, :, 1:]),
        "val_latent_sharpness": sharpness.item(),
    }
    if decode is not None:
        v_gen, v_real = decode(gen[:, :, :5]).float(), decode(real[:, :, :5]).float()
        out["val_psnr_16_vs_decoded_real"] = psnr(v_gen[:, :, 1:], v_real[:, :, 1:]).mean().item()
        out["val_sharpness_16"] = sharpness_ratio(to_uint8(v_gen[:, :, 1:]).numpy(), to_uint8(v_real[:, :, 1:]).numpy())
    return out


def load_val(cfg: StageConfig):
    """``(tensors, captions)`` of the validation conditions, or None when none are given."""
    if not cfg.val_conditions:
        return None
    tensors, captions, _ = read_set(cfg.val_conditions, "conditions")
    if "latents" not in tensors:
        raise ValueError(f"{cfg.val_conditions} has no real latents: make it with --real-latents")
    return tensors, captions


class Validation:
    """A stage's periodic validation (:func:`validate`) on the main process, logged; ``last`` keeps the latest."""

    def __init__(self, cfg: StageConfig, teacher: Teacher, stream: StreamConfig, par: Parallel, log) -> None:
        self.cfg, self.teacher, self.stream, self.par, self.log = cfg, teacher, stream, par, log
        self.val = load_val(cfg)
        dev = teacher.dit.device
        self.decode = latent_decoder(None, cfg.light_decoder, dev) if cfg.light_decoder else None
        self.autocast = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
        self.last: dict[str, float] = {}

    def __call__(self, model: WanDiT, step: int) -> dict[str, float]:
        """Validate ``model`` on the main process; every process calls it (under ``fsdp`` they gather it)."""
        if self.val is None:
            return self.last
        model = self.par.full_model(model)
        if self.par.main:
            with torch.autocast(**self.autocast):
                self.last = validate(model, self.stream, self.teacher, self.val, self.cfg, self.decode)
            self.log.write(step=step, **self.last)
            print(json.dumps({"step": step, **self.last}))
        return self.last


def provenance(teacher: Teacher, cfg: StageConfig) -> dict[str, Any]:
    """What an exported student records about where it came from (the VAE fingerprint is checked at export)."""
    return {
        "teacher_step": teacher.step,
        "vae_fingerprint": teacher.fingerprint,
        **{k: getattr(cfg, k) for k in STREAM_SETTINGS},
    }


# The settings that make a student's streaming layout: a checkpoint resumes and an export is made only with the
# ones it was trained with.
STREAM_SETTINGS = ("timesteps", "shift", "cache_write")
# What students and checkpoints made before a setting existed were trained with.
STREAM_BEFORE = {"cache_write": "clean"}


def check_stream_settings(cfg: StageConfig, recorded: dict[str, Any], what: str) -> None:
    """Refuse ``cfg`` where it differs from the stream settings ``recorded`` by a student (its ``result.json``)."""
    recorded = {**STREAM_BEFORE, **recorded}
    diff = [k for k in STREAM_SETTINGS if k in recorded and recorded[k] != getattr(cfg, k)]
    if diff:
        got = ", ".join(f"{k}={getattr(cfg, k)!r}" for k in diff)
        want = " ".join(f"--{k.replace('_', '-')} {recorded[k]}" for k in diff)
        raise ValueError(f"{what} was trained with other streaming settings than {got}: pass {want}")


class _Saved:
    """A state dict already gathered, as a checkpoint part."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


def write_checkpoint(cfg: StageConfig, step: int, par: Parallel, ckpt: Path, parts: dict[str, Any]) -> None:
    """Checkpoint ``parts`` (see :meth:`Parallel.state_of`) on the main process; every process calls it (under
    ``fsdp`` they gather the full state dicts first)."""
    if par.sharded:
        parts = {k: _Saved(p.state_dict()) for k, p in parts.items()}
    if par.main:
        save_state(ckpt, step, dataclasses.asdict(cfg), parts)


def after_step(cfg: StageConfig, step: int, par: Parallel, validation: Validation, model, ckpt: Path, parts) -> None:
    """What every stage does after an update: validate every ``val_every`` steps and checkpoint every
    ``checkpoint_every`` steps (on the main process; every process calls it)."""
    if cfg.val_every and step % cfg.val_every == 0:
        validation(model, step)
    if step % cfg.checkpoint_every == 0:
        write_checkpoint(cfg, step, par, ckpt, parts)


def finish(cfg: StageConfig, step: int, par: Parallel, validation: Validation, model, ckpt: Path, parts) -> dict:
    """The end of a stage: last checkpoint and validation on the main process, then all processes meet. Returns
    the last validation's metrics (empty without validation, and on the other processes)."""
    write_checkpoint(cfg, step, par, ckpt, parts)
    validation(model, step)
    par.barrier()
    return validation.last


# -- export --------------------------------------------------------------------------------------------------------
def export_student(student: WanDiT, out: Path, step: int, meta: dict[str, Any]) -> Path:
    """bf16 student in the official sharded layout (shards <= 15 MiB) + ``result.json``."""
    save_checkpoint(student, out, max_shard_size="15MiB", dtype=torch.bfloat16, overwrite=True)
    (out / "result.json").write_text(json.dumps({"step": step, **meta}, indent=1))
    return out
