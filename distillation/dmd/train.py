"""Stage 3, ``dmd``: distribution matching distillation on the student's own rollouts (Self-Forcing).

Each generator update:

1. **self-rollout**: the student streams ``rollout_frames`` latent frames from a real start latent with the real
   actions through :class:`~world_model.streaming.StreamingGenerator` (KV cache, rolling window + sink, cache pass
   at ``t = 0``: what the env runs). One exit step is drawn per update; the last ``window`` frames stop there and
   keep gradients, earlier frames (``rollout_frames > window``: windows cut from longer rollouts, as
   Self-Forcing++ does, so the student learns to recover from its own drift) run the whole schedule without;
2. **DMD loss** on the window: its first frame (the start latent, or the student's frame before the window) is the
   teacher's image condition; real score = the frozen bidirectional teacher with CFG on caption and actions,
   fake score = the critic; see :func:`~distillation.dmd.losses.dmd_loss`.

Between generator updates the critic takes ``critic_steps`` flow-matching updates on detached rollouts (fresh,
or drawn from a replay buffer of recent ones with ``--critic-replay``), at its own learning rate. EMA of the
student, gradient clipping, gradient accumulation, gradient checkpointing, bf16 autocast, data parallelism over
``torchrun`` processes (batches drawn per global micro-batch index; ``--parallel ddp`` averages the gradients of
replicas, ``--parallel fsdp`` shards student, critic, teacher, optimizer states and EMA with FSDP2: see
:mod:`distillation.dmd.common`).

LoRA (``--critic-lora R``, ``--student-lora R``; :mod:`distillation.training.lora`): the critic becomes the frozen
teacher (its weights shared, not copied) plus rank-R adapters, and/or the student its frozen init weights plus
adapters. Only the adapters train and go to the checkpoint; the critic is exported as its adapters
(``<out>/dmd/critic/lora.safetensors``: small enough to travel with a GPU call), the student merged into a full
bf16 export as without LoRA. Not yet with ``--parallel fsdp`` (the shared frozen base would be sharded twice).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from distillation.dmd.common import (
    STREAM_BEFORE,
    STREAM_SETTINGS,
    StageConfig,
    Validation,
    after_step,
    conditions_of,
    draw_rows,
    export_student,
    finish,
    init_parallel,
    mix_seed,
    provenance,
    step_generator,
    stream_config,
)
from distillation.dmd.conditions import KIND as CONDITIONS
from distillation.dmd.losses import dmd_loss, draw_sigma, velocity_denoiser
from distillation.dmd.models import (
    check_latents,
    load_critic_export,
    load_teacher,
    make_critic,
    make_student,
    student_config_from,
)
from distillation.dmd.rollout import Conditions, self_rollout
from distillation.dmd.shards import read_set
from distillation.teacher import flow_loss, image_condition, load_export_dit
from distillation.training.budget import JsonlLog, TimeBudget, learning_rate
from distillation.training.checkpoint import restore_state
from distillation.training.ema import EMA
from distillation.training.lora import (
    DEFAULT_TARGETS,
    LoRASpec,
    LoRAState,
    add_lora,
    base_fingerprint,
    lora_parameters,
    merge_lora,
    save_lora,
    shared_copy,
)
from distillation.training.optim import clipped_step, fused_adamw
from world_model.dit import WanDiT
from world_model.sampling import guided


@dataclasses.dataclass
class DMDConfig(StageConfig):
    init_from: str = ""  # student export to start from (default: <out>/ode_init/export, else the teacher's weights)
    critic_from: str = ""  # critic export to start from (resuming on another machine); default per --critic-init
    critic_init: str = "teacher"  # a fresh critic copies the "teacher" or the "student"
    student_config: str = ""  # a student of another size (config.json / export folder); "" = the teacher's
    window: int = 8  # latent frames per DMD window (the teacher's clip length less its image frame)
    rollout_frames: int = 8  # latent frames rolled out per update; > window trains on windows of long rollouts
    # > 0: each update rolls out a length drawn uniformly from [rollout_frames_min, rollout_frames] (as
    # Self-Forcing++ does), so the student sees every horizon up to the longest and an update costs the mean
    # length, not the longest; 0: always rollout_frames
    rollout_frames_min: int = 0
    # the image both scores condition a window of a long rollout on: "rollout" (the student's frame before the
    # window, Self-Forcing++'s choice) or "start" (the real start latent: a condition the teacher knows, but the
    # window then reads as following the start frame directly, as if the frames between had not happened)
    window_image: str = "rollout"
    # noise mixed into that image latent when it is the student's own frame (one draw, shared by both scores and
    # the critic's training on the window): the Doom teacher learnt to read conditions noised up to 0.1
    # (train_teacher --cond-noise), so a drifted frame can be read as a noisy real one. 0: clean
    window_cond_noise: float = 0.0
    guidance: float = 3.0  # CFG scale of the real score (caption, and actions if the teacher learnt the null action)
    sigma_min: float = 0.02  # range of the noise levels of the DMD loss (before the shift)
    sigma_max: float = 0.98
    critic_steps: int = 5  # critic updates per generator update
    critic_lr: float = 4e-5  # peak AdamW learning rate of the critic (not yet tuned on the GPU)
    critic_replay: int = 0  # rollouts kept for the critic to draw from (0: fresh rollouts only)
    # fresh student rollouts per update for the critic; its other critic steps reuse the newest window (or draw
    # from the replay buffer) with new noise. 0: the old rule, a fresh rollout per critic step (every other one
    # from the buffer with --critic-replay). A rollout is the costly part of an update: 1 makes updates ~2-3x faster
    critic_rollouts: int = 0
    # critic-only updates before the first generator update of a run whose critic starts fresh (no checkpoint),
    # so the fake score tracks a student that was trained before (e.g. resuming elsewhere without --critic-from)
    critic_warmup: int = 0
    warmup: int = 10  # steps of linear warm-up of both optimizers
    # LoRA rank of the critic; 0: the critic is a full trainable copy. > 0: the frozen teacher (or the student's
    # init weights with --critic-init student), its weights shared, plus trained adapters of this rank, which alone
    # go to the checkpoint and to <out>/dmd/critic (float32; at the Doom size 0.8 MB at rank 4, 1.6 MB at rank 8,
    # where a full critic is 23 MB); --critic-from then takes such an adapter export (a full critic export still
    # starts a full critic)
    critic_lora: int = 0
    # LoRA rank of the student; 0: the whole student trains. > 0: adapters on its frozen init weights (--init-from,
    # else the teacher's, shared) train alone; the export merges them into a full bf16 student
    student_lora: int = 0
    # LoRA alpha (adapters scaled by alpha / rank); 0 means alpha = rank: a scale of 1, so B @ A is the weight change
    # itself and the rate alone sets the step (peft's usual setting). LoRA usually wants a higher rate than full
    # training (not yet tuned)
    lora_alpha: float = 0.0
    # comma-separated name suffixes of the linears that get adapters (default: self- and cross-attention q,k,v,o
    # and both FFN linears of every block)
    lora_targets: str = ",".join(DEFAULT_TARGETS)


# -- the two losses ---------------------------------------------------------------------------------------------
def teacher_denoiser(
    teacher, dit: WanDiT, cond: Conditions, window: torch.Tensor, guidance: float = 1.0, null: str | None = None
):
    """``x0`` estimates of a window ``[B, 16, 1 + w, h, w]`` by ``dit`` (bidirectional) conditioned on its first
    frame, the window's actions and captions; with ``guidance`` != 1, contrasted with the ``null`` branch: no
    caption (``"caption"``) or no caption and no actions (``"actions"``)."""
    y = image_condition(window)
    with torch.no_grad():  # the scores are read without gradients (dmd_loss): keep no graph of the conditions
        ctrl = dit.prepare_control(cond.control)
        ctx = dit.prepare_context(cond.context)
    v_c = lambda x, t: dit(x, t, ctx, y, ctrl)  # noqa: E731
    v_u = None
    if null is not None and guidance != 1.0:
        with torch.no_grad():
            ctx_u = dit.prepare_context(teacher.context([""] * len(cond.captions)))
            ctrl_u = dit.prepare_control(torch.zeros_like(cond.control)) if null == "actions" else ctrl
        v_u = lambda x, t: dit(x, t, ctx_u, y, ctrl_u)  # noqa: E731
    return velocity_denoiser(guided(v_c, v_u, guidance))


WINDOW_IMAGES = ("rollout", "start")


def window_conditions(
    cond: Conditions,
    rollout: torch.Tensor,
    window: int,
    image: str = "rollout",
    cond_noise: float = 0.0,
    gen: torch.Generator | None = None,
) -> tuple[Conditions, torch.Tensor]:
    """The last ``window`` frames of a rollout ``[B, 16, n, h, w]`` with their image frame before them:
    ``(conditions of the window, clip [B, 16, 1 + window, h, w])``.

    The image is the start latent for a rollout of ``window`` frames; for a longer one, the student's frame before
    the window (``image="rollout"``), noised by ``cond_noise`` with ``gen``'s draw, or the real start latent
    (``image="start"``). The clip's frame 0 is that image as the scores see it."""
    if image not in WINDOW_IMAGES:
        raise ValueError(f"window image {image!r} is not one of {', '.join(WINDOW_IMAGES)}")
    n = rollout.shape[2]
    if n == window or image == "start":
        first = cond.first_latent
    else:
        first = rollout[:, :, n - window - 1 : n - window].detach()
        if cond_noise > 0:
            noise = torch.randn(first.shape, device=first.device, generator=gen, dtype=torch.float32)
            first = ((1 - cond_noise) * first.float() + cond_noise * noise).to(first.dtype)
    clip = torch.cat([first, rollout[:, :, n - window :]], dim=2)
    ctrl = torch.cat([cond.control[:, :, :1], cond.control[:, :, 1 + n - window :]], dim=2)
    acts = cond.actions[:, n - window :]
    return dataclasses.replace(cond, first_latent=first, control=ctrl, actions=acts), clip


def generator_loss(student, teacher, critic, stream, cond, cfg, gen: torch.Generator, exit_step: int):
    """DMD loss of one micro-batch (the rollout keeps gradients on the window's exit passes)."""
    rollout = self_rollout(student, stream, cond, exit_step=exit_step, grad_frames=cfg.window)
    wcond, clip = window_conditions(cond, rollout, cfg.window, cfg.window_image, cfg.window_cond_noise, gen)
    null = "actions" if teacher.guide_actions else "caption"
    real = teacher_denoiser(teacher, teacher.dit, wcond, clip, cfg.guidance, null)
    fake = teacher_denoiser(teacher, critic, wcond, clip)
    sigma = draw_sigma(clip.shape[0], cfg.sigma_min, cfg.sigma_max, cfg.shift, clip.device, gen)
    noise = torch.randn(clip.shape, device=clip.device, generator=gen)
    mask = torch.arange(clip.shape[2], device=clip.device) > 0  # frame 0 is the condition, not the student's
    loss, stats = dmd_loss(clip, real, fake, sigma, noise, mask)
    return loss, stats, (wcond, clip.detach())


def critic_loss(critic, teacher, wcond: Conditions, clip: torch.Tensor, cfg, gen: torch.Generator) -> torch.Tensor:
    """Flow matching of the critic on a detached student window (the teacher's own training loss)."""
    fm = SimpleNamespace(shift=cfg.shift, cond_noise=0.0)
    return flow_loss(critic, teacher.text, teacher.cond, clip, wcond.actions, wcond.captions, fm, gen)


# -- the loop ---------------------------------------------------------------------------------------------------
class Replay:
    """The last ``capacity`` detached windows for the critic (``(conditions, clip)`` per micro-batch)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.items = capacity, []

    def add(self, item) -> None:
        if self.capacity:
            self.items = (self.items + [item])[-self.capacity :]

    def draw(self, seed: int):
        return self.items[mix_seed(seed) % len(self.items)]


def default_init(cfg: DMDConfig) -> str:
    if cfg.init_from:
        return cfg.init_from
    ode = Path(cfg.out) / "ode_init" / "export"
    return str(ode) if (ode / "config.json").exists() else ""


def lora_targets(cfg: DMDConfig) -> tuple[str, ...]:
    return tuple(t.strip() for t in cfg.lora_targets.split(",") if t.strip())


def lora_spec(cfg: DMDConfig, rank: int, base: str | Path) -> LoRASpec | None:
    """The adapters of rank ``rank`` on the weights exported in ``base`` (None for rank 0: no adapters)."""
    if rank <= 0:
        return None
    return LoRASpec(rank, cfg.lora_alpha or float(rank), lora_targets(cfg), base_fingerprint(base), str(base))


def rollout_length(cfg: DMDConfig, step: int) -> int:
    """Latent frames the student rolls out in update ``step``: ``rollout_frames``, or with ``rollout_frames_min`` a
    length drawn uniformly from ``[rollout_frames_min, rollout_frames]`` (seeded by the step: the same in every
    process, and again on a resume)."""
    if not cfg.rollout_frames_min:
        return cfg.rollout_frames
    return cfg.rollout_frames_min + mix_seed(cfg.seed, step, 7) % (cfg.rollout_frames - cfg.rollout_frames_min + 1)


def train(cfg: DMDConfig) -> dict[str, float]:
    """Run (or resume) DMD; the EMA student goes to ``<out>/dmd/export`` and the critic to ``<out>/dmd/critic``."""
    if cfg.rollout_frames < cfg.window:
        raise ValueError(f"rollout_frames ({cfg.rollout_frames}) must be >= window ({cfg.window})")
    if cfg.rollout_frames_min and not cfg.window <= cfg.rollout_frames_min <= cfg.rollout_frames:
        raise ValueError(
            f"--rollout-frames-min {cfg.rollout_frames_min} must lie between --window {cfg.window} and "
            f"--rollout-frames {cfg.rollout_frames} (or be 0 for a fixed length)"
        )
    if cfg.window_image not in WINDOW_IMAGES:
        raise ValueError(f"--window-image {cfg.window_image!r}: choose one of {', '.join(WINDOW_IMAGES)}")
    if not 0.0 <= cfg.window_cond_noise < 1.0:
        raise ValueError(f"--window-cond-noise {cfg.window_cond_noise} must be in [0, 1)")
    if cfg.critic_lora < 0 or cfg.student_lora < 0:
        raise ValueError(
            f"LoRA ranks must be >= 0, got --critic-lora {cfg.critic_lora} --student-lora {cfg.student_lora}"
        )
    par, device = init_parallel(cfg.device, cfg.parallel)
    if par.sharded and (cfg.critic_lora or cfg.student_lora):
        raise NotImplementedError(
            "--parallel fsdp is not supported with --critic-lora / --student-lora yet (the frozen base the adapters "
            "share would be sharded twice): use --parallel ddp, where only the small adapters' gradients travel"
        )
    torch.manual_seed(cfg.seed)
    teacher = load_teacher(cfg.teacher, device)
    tensors, captions, meta = read_set(cfg.conditions, CONDITIONS)
    check_latents(f"the teacher {cfg.teacher}", teacher.fingerprint, meta.get("vae_fingerprint"), cfg.conditions)
    if tensors["actions"].shape[1] < cfg.rollout_frames:
        raise ValueError(
            f"{cfg.conditions} holds {tensors['actions'].shape[1]} actions per clip, fewer than --rollout-frames "
            f"{cfg.rollout_frames}: make conditions with --steps {cfg.rollout_frames}"
        )
    stream = stream_config(cfg)
    student_cfg = student_config_from(cfg.student_config)
    out = Path(cfg.out) / "dmd"
    ckpt = out / "checkpoint.pt"
    init = default_init(cfg)
    # The weights adapters sit on (none without LoRA): the student's init export, else the teacher's. A fresh
    # random student has no export to rebuild it from on a resume.
    same_size = student_cfg is None or student_cfg == teacher.dit.cfg
    if not init and not same_size and (cfg.student_lora or (cfg.critic_lora and cfg.critic_init == "student")):
        raise ValueError(
            "LoRA adapters need a base with exported weights, but a student of another size without --init-from "
            "starts random: pass --init-from (e.g. the ode-init export), or --critic-init teacher"
        )
    student_base = init or cfg.teacher
    critic_base = cfg.teacher if cfg.critic_init == "teacher" else student_base
    s_spec = lora_spec(cfg, cfg.student_lora, student_base)
    c_spec = lora_spec(cfg, cfg.critic_lora, critic_base)
    student = make_student(teacher, student_cfg, share=cfg.student_lora > 0 and not init)
    # A base under adapters is not in the checkpoint: it is loaded again on a resume (and then the trained student,
    # if it trains whole, comes from the checkpoint as without LoRA).
    needs_base = cfg.student_lora or (cfg.critic_lora and cfg.critic_init == "student")
    if init and (not ckpt.exists() or needs_base):
        print(f"student from {init} (its step {load_export_dit(init, student)})")
    if cfg.student_lora:
        student.requires_grad_(False)  # before the critic: a frozen student base is shared, not copied
    critic = make_critic(teacher, student, cfg.critic_init, cfg.critic_lora, cfg.lora_alpha or None, lora_targets(cfg))
    if cfg.student_lora:
        add_lora(student, cfg.student_lora, cfg.lora_alpha or None, lora_targets(cfg))
    if cfg.critic_from and not ckpt.exists():
        base = lambda: (base_fingerprint(critic_base), str(critic_base))  # read only for an adapter export
        load_critic_export(cfg.critic_from, critic, c_spec, base)
        print(f"critic from {cfg.critic_from}")
    for m in (student, critic):
        m.gradient_checkpointing = cfg.grad_checkpointing
    ema = EMA(student, cfg.ema, share_frozen=cfg.student_lora > 0)  # with LoRA: an average of the adapters
    par.shard(student, critic, ema.model, teacher.dit)  # --parallel fsdp: shards (the EMA's match the student's)
    opt_g = fused_adamw(lora_parameters(student) if s_spec else student.parameters(), cfg.lr, betas=(0.0, 0.999))
    opt_c = fused_adamw(lora_parameters(critic) if c_spec else critic.parameters(), cfg.critic_lr, betas=(0.0, 0.999))
    parts = {  # with LoRA, a network's part is its adapters (and their spec) alone
        "student": LoRAState(student, s_spec) if s_spec else par.state_of(student),
        "critic": LoRAState(critic, c_spec) if c_spec else par.state_of(critic),
        "opt_student": par.state_of(student, opt_g),
        "opt_critic": par.state_of(critic, opt_c),
        "ema": LoRAState(ema.model, s_spec) if s_spec else par.state_of(ema.model),
    }
    where = "cpu" if par.sharded else device  # each process keeps only its shards of what it reads
    same = (*STREAM_SETTINGS, "student_config")
    same += ("critic_lora", "student_lora") if cfg.critic_lora or cfg.student_lora else ()
    step = restore_state(ckpt, parts, dataclasses.asdict(cfg), same, where, older=STREAM_BEFORE) or 0
    budget, log = TimeBudget(cfg.max_minutes), JsonlLog(out / "log.jsonl")
    budget.mark(step)
    validation = Validation(cfg, teacher, stream, par, log)
    autocast = validation.autocast
    replay = Replay(cfg.critic_replay)
    steps = len(stream.schedule.timesteps)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="dmd", dynamic_ncols=True, disable=not par.main)
    micros = par.micro_batches(cfg.accumulate)

    def batch(micro: int, phase: int) -> Conditions:
        rows = draw_rows(len(captions), cfg.batch_size, cfg.seed, mix_seed(step, phase), micro)
        frames = rollout_length(cfg, step)  # one length per update: the critic's rollouts and the generator's
        return conditions_of(teacher, tensors, captions, rows, frames, mix_seed(cfg.seed, step, phase))

    latest: dict[int, tuple] = {}  # micro-batch -> the newest detached window (a fresh rollout or the generator's)

    def fresh(phase: int) -> bool:
        if cfg.critic_rollouts == 0:  # the old rule: fresh, or every other step from the buffer
            return not (replay.items and phase % 2 == 0)
        return phase <= cfg.critic_rollouts or not latest

    def critic_round(tag: int):
        """``critic_steps`` updates of the critic on the student as it is now (detached rollouts: no gradient
        reaches the student); ``tag`` keeps the warm-up's draws apart from the updates'. Returns the summed loss."""
        c_total = 0.0
        for phase in range(1, cfg.critic_steps + 1):
            opt_c.zero_grad(set_to_none=True)
            for j, micro in enumerate(micros):
                par.sync_gradients([critic], j == len(micros) - 1)  # fsdp: reduce-scatter after the last only
                gen = step_generator(cfg.seed, mix_seed(step, tag + phase), micro, device)
                if fresh(phase):
                    cond = batch(micro, tag + phase)
                    with torch.no_grad(), torch.autocast(**autocast):
                        rollout = self_rollout(student, stream, cond)
                    latest[micro] = window_conditions(
                        cond, rollout, cfg.window, cfg.window_image, cfg.window_cond_noise, gen
                    )
                    replay.add(latest[micro])
                    wcond, clip = latest[micro]
                elif replay.items:
                    wcond, clip = replay.draw(mix_seed(cfg.seed, step, tag + phase, micro))
                else:
                    wcond, clip = latest[micro]
                with torch.autocast(**autocast):
                    loss = critic_loss(critic, teacher, wcond, clip, cfg, gen)
                loss.backward()
                c_total += loss.detach()
            par.average_gradients([critic], cfg.accumulate * par.world)
            clipped_step(opt_c, cfg.grad_clip)
        return c_total

    if step == 0 and cfg.critic_warmup:
        for k in tqdm(range(cfg.critic_warmup), desc="critic warm-up", disable=not par.main):
            for g in opt_c.param_groups:  # the critic's rate warms up as in the updates
                g["lr"] = cfg.critic_lr * min(1.0, (k + 1) / max(1, cfg.warmup))
            c_warm = critic_round(-1000 * (k + 1))
        if par.main:
            log.write(
                step=0, critic_warmup=cfg.critic_warmup, critic_loss=float(c_warm) / (cfg.accumulate * cfg.critic_steps)
            )

    while step < cfg.max_steps and not budget.expired():
        lrs = []
        for opt, base in ((opt_g, cfg.lr), (opt_c, cfg.critic_lr)):
            lrs.append(learning_rate(base, step, warmup=cfg.warmup, budget=budget, cooldown=cfg.cooldown))
            for g in opt.param_groups:
                g["lr"] = lrs[-1]
        c_total = critic_round(0)
        # Generator update: one exit step for the whole update (the same in every process and micro-batch).
        exit_step = mix_seed(cfg.seed, step, 0) % steps
        opt_g.zero_grad(set_to_none=True)
        g_total, gnorm_dmd = 0.0, 0.0
        for j, micro in enumerate(micros):
            par.sync_gradients([student], j == len(micros) - 1)
            gen = step_generator(cfg.seed, mix_seed(step, 0), micro, device)
            with torch.autocast(**autocast):
                loss, stats, item = generator_loss(
                    student, teacher, critic, stream, batch(micro, 0), cfg, gen, exit_step
                )
            loss.backward()
            replay.add(item)
            latest[micro] = item
            g_total += loss.detach()
            gnorm_dmd += stats["grad_norm"]
        par.average_gradients([student], cfg.accumulate * par.world)
        critic.zero_grad(set_to_none=True)  # the fake score's graph got no gradient, but be sure it never steps on one
        gnorm = clipped_step(opt_g, cfg.grad_clip)
        step += 1
        ema.update(student, step)
        bar.update(1)
        if par.main and step % cfg.log_every == 0:
            rec = {
                "step": step,
                "generator_loss": float(g_total) / cfg.accumulate,
                "critic_loss": float(c_total) / (cfg.accumulate * cfg.critic_steps),
                "dmd_grad": float(gnorm_dmd) / cfg.accumulate,
                "grad_norm": float(gnorm),
                "exit_step": exit_step,
                "lr": lrs[0],
                "critic_lr": lrs[1],
                "steps_per_s": budget.steps_per_s(step),
                "elapsed_s": budget.elapsed,
            }
            log.write(**rec)
            bar.set_postfix(g=f"{rec['generator_loss']:.4f}", c=f"{rec['critic_loss']:.4f}")
        after_step(cfg, step, par, validation, ema.model, ckpt, parts)
    bar.close()
    metrics = finish(cfg, step, par, validation, ema.model, ckpt, parts)
    final, final_critic = par.full_model(ema.model), par.full_model(critic)  # all processes gather under fsdp
    if par.main:
        if s_spec:  # a full student, as without LoRA: the adapters folded into new weights (the base stays)
            final = merge_lora(shared_copy(final))
        export_student(final, out / "export", step, {"stage": "dmd", **metrics, **provenance(teacher, cfg)})
        if c_spec:
            save_lora(final_critic, out / "critic", c_spec, {"step": step, "stage": "dmd-critic"})
        else:
            export_student(final_critic, out / "critic", step, {"stage": "dmd-critic"})
    return {"step": step, **metrics}
