"""The distillation stages (``distillation.dmd``) on tiny models at the Doom frame size (12x16 latents)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import randomize_

from distillation import teacher as teacher_lib
from distillation.dmd import losses, ode_init, pairs, rollout, shards
from distillation.dmd import train as dmd
from distillation.dmd.common import StageConfig, conditions_of, init_parallel, stream_config
from distillation.dmd.models import check_fits, load_teacher, make_critic, make_student
from distillation.training.checkpoint import load_checkpoint
from world_model import doom
from world_model.config import WanDiTConfig
from world_model.control import ActionControl
from world_model.dit import WanDiT
from world_model.streaming import StreamingGenerator

FP = "feedc0de00000000"  # the VAE fingerprint the tiny parts pretend to share
TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=36, out_dim=16, text_dim=32, text_len=16)
TEXT = dict(out_dim=32, dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_length=16)
LATENT = (16, 1, 12, 16)


def tiny_teacher(folder: Path, seed: int = 0, fingerprint: str = FP) -> Path:
    """A random tiny act-control teacher exported as distillation.train_teacher does."""
    from world_model.checkpoints.text_encoders import SmallTextEncoderConfig

    torch.manual_seed(seed)
    dit, text = teacher_lib.build_models(
        torch.device("cpu"), WanDiTConfig(control_dim=7, **TINY), SmallTextEncoderConfig(**TEXT)
    )
    randomize_(dit, std=0.05, seed=seed)
    teacher_lib.export(dit, text, folder, 7, {"vae_fingerprint": fingerprint, "action_dropout": 0.1})
    return folder


def conditions_set(folder: Path, n: int = 6, steps: int = 4, real_latents: bool = False, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    out = shards.ShardSet.open(folder, "conditions", {"vae_fingerprint": FP, "split": "train", "steps": steps})
    for lo in range(0, n, 3):
        k = min(3, n - lo)
        t = {
            "first_latent": torch.randn(k, *LATENT, generator=g).to(torch.bfloat16),
            "actions": torch.rand(k, steps, 6, generator=g) * 2 - 1,
        }
        if real_latents:
            t["latents"] = torch.randn(k, 16, steps + 1, 12, 16, generator=g).to(torch.bfloat16)
        out.add(t, [f"clip {lo + i}" for i in range(k)])
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmd")
    teacher = tiny_teacher(root / "teacher")
    cond = conditions_set(root / "cond", n=6, steps=4)
    val = conditions_set(root / "val", n=3, steps=3, real_latents=True, seed=1)
    cfg = pairs.PairsConfig(
        teacher=str(teacher), conditions=str(cond), out=str(root / "pairs"), clips=6, clip_steps=3, steps=6,
        batch_size=4, shard_clips=3, device="cpu",
    )  # fmt: skip
    pairs.build(cfg)
    return dict(root=root, teacher=teacher, cond=cond, val=val, pairs=root / "pairs", pairs_cfg=cfg)


def stage(world, tmp_path, cls=ode_init.ODEInitConfig, **kw):
    base = dict(
        teacher=str(world["teacher"]), conditions=str(world["cond"]), val_conditions=str(world["val"]),
        out=str(tmp_path), batch_size=2, val_every=0, val_clips=2, log_every=1, checkpoint_every=1, device="cpu",
        window_frames=4,
    )  # fmt: skip
    if cls is ode_init.ODEInitConfig:
        base["pairs"] = str(world["pairs"])
    if cls is dmd.DMDConfig:
        base.update(window=3, rollout_frames=3, critic_steps=2)
    return cls(**{**base, **kw})


# -- pairs -------------------------------------------------------------------------------------------------------
def test_pairs_pass_through_the_student_levels(world):
    tensors, captions, meta = shards.read_set(world["pairs"], "pairs")
    assert tensors["states"].shape == (6, 4, 16, 4, 12, 16) and tensors["x0"].shape == (6, 16, 4, 12, 16)
    assert len(captions) == 6 and meta["sigmas"][0] == 1.0
    sig, where = pairs.merged_sigmas(6, 3.0, tuple(meta["sigmas"]))
    assert [float(sig[i]) for i in where] == pytest.approx(meta["sigmas"])
    # the first state is the noise the teacher started from: unit variance, unlike the sample
    assert tensors["states"][:, 0].float().std() == pytest.approx(1.0, abs=0.1)
    assert not torch.equal(tensors["states"][:, 1], tensors["states"][:, 0])


def test_corrupt_shard_is_named_skipped_and_rebuilt(world, tmp_path):
    import shutil

    folder = tmp_path / "pairs"
    shutil.copytree(world["pairs"], folder)
    shard = folder / "pairs-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # a flipped byte in the data region, not the header
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="pairs-00001.safetensors"):
        tensors, captions, _ = shards.read_set(folder, "pairs")
    assert len(captions) == 3  # only the good shard
    pairs.build(dataclasses.replace(world["pairs_cfg"], out=str(folder)))  # rebuilds the bad one
    tensors2, captions2, _ = shards.read_set(folder, "pairs")
    assert len(captions2) == 6


def test_pairs_refuse_a_teacher_on_other_latents(world, tmp_path):
    other = tiny_teacher(tmp_path / "other", fingerprint="0123456789abcdef")
    with pytest.raises(ValueError, match="0123456789abcdef.*feedc0de00000000|feedc0de00000000.*0123456789abcdef"):
        pairs.build(dataclasses.replace(world["pairs_cfg"], teacher=str(other), out=str(tmp_path / "p")))


# -- rollouts: one inference path --------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_write", ["clean", "last_pass"])
def test_self_rollout_is_the_streaming_generator(world, cache_write):
    """The trainer's rollout, with gradients kept or not, gives what the env's streaming code gives (controls
    from the env's ActionControl, same seeds), whichever way the cache is written."""
    teacher = load_teacher(world["teacher"], "cpu")
    student = make_student(teacher).eval()
    cfg = StageConfig(window_frames=4, cache_write=cache_write)
    stream = stream_config(cfg)
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(3), 4, seed=5)
    with torch.no_grad():
        plain = rollout.self_rollout(student, stream, cond)
    trained = rollout.self_rollout(student, stream, cond, exit_step=None, grad_frames=4)
    assert trained.requires_grad
    torch.testing.assert_close(trained.detach(), plain)

    control = ActionControl(doom.action_config(), 3)
    gen = StreamingGenerator(student, stream)
    gen.prime(cond.first_latent, cond.context, control=control.identity(3), seeds=cond.seeds)
    steps = [gen.step(control(cond.actions[:, i : i + 1])) for i in range(4)]
    torch.testing.assert_close(torch.cat(steps, 2), plain)


@pytest.mark.parametrize("exit_step", [1, 3])
def test_a_last_pass_rollout_leaves_the_cache_inference_leaves(world, exit_step):
    """With ``cache_write="last_pass"`` a training rollout that exits early still runs the chain to its last pass
    (without gradients), so the next frame sees the cache and the noise draws inference gives: the frames after
    an early exit equal inference's, and the exit pass alone trains the student (none of it reaches the cache)."""
    teacher = load_teacher(world["teacher"], "cpu")
    student = make_student(teacher).eval()
    stream = stream_config(StageConfig(window_frames=4, cache_write="last_pass"))
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(2), 3, seed=2)
    control = ActionControl(doom.action_config(), 2)
    ctrls = [control(cond.actions[:, i : i + 1]) for i in range(3)]
    runs = []
    for train in (False, True):
        control.reset()
        gen = StreamingGenerator(student, stream)
        gen.prime(cond.first_latent, cond.context, control=control.identity(2), seeds=cond.seeds)
        first = gen.training_step(ctrls[0], exit_step) if train else gen.step(ctrls[0])
        assert not any(t.requires_grad for t in (gen.cache.k, gen.cache.v))
        with torch.no_grad():
            runs.append((first, torch.cat([gen.step(c) for c in ctrls[1:]], 2)))
    (full, after_full), (exited, after_exit) = runs
    torch.testing.assert_close(after_exit, after_full)  # same cache, same noise draws as inference
    assert exited.requires_grad
    if exit_step < 3:
        assert not torch.allclose(exited.detach(), full)  # an earlier x0 estimate
    else:
        torch.testing.assert_close(exited.detach(), full)
    exited.sum().backward()
    assert student.head.head.weight.grad.abs().sum() > 0


def test_export_refuses_other_streaming_settings_than_the_students(world, tmp_path):
    from distillation.dmd.common import check_stream_settings

    recorded = {"timesteps": "1000,750,500,250", "shift": 3.0, "cache_write": "last_pass"}
    check_stream_settings(StageConfig(cache_write="last_pass"), recorded, "the student s")
    with pytest.raises(ValueError, match="the student s .*cache_write='clean'.*pass --cache-write last_pass"):
        check_stream_settings(StageConfig(), recorded, "the student s")
    older = {"timesteps": "1000,750,500,250"}  # a student from before --cache-write: its cache was written clean
    check_stream_settings(StageConfig(), older, "an older student")
    with pytest.raises(ValueError, match="pass --cache-write clean"):
        check_stream_settings(StageConfig(cache_write="last_pass"), older, "an older student")


def test_exit_step_keeps_gradient_on_one_pass_only(world):
    teacher = load_teacher(world["teacher"], "cpu")
    student = make_student(teacher)
    stream = stream_config(StageConfig(window_frames=4))
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(2), 3, seed=0)
    out = rollout.self_rollout(student, stream, cond, exit_step=1, grad_frames=2)
    out[:, :, :1].sum().backward(retain_graph=True)  # frame 0 is before the window: no gradient reaches the student
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())
    out[:, :, 1:].sum().backward()
    assert student.head.head.weight.grad.abs().sum() > 0
    # the exit step's x0 differs from the full schedule's: the rollout stopped early
    with torch.no_grad():
        full = rollout.self_rollout(student, stream, cond)
    assert not torch.allclose(out[:, :, 1:].detach(), full[:, :, 1:])


def test_window_of_a_long_rollout_takes_the_chosen_image(world):
    """A window cut from a longer rollout is conditioned on the student's frame before it (optionally noised, the
    same draw for the same generator) or on the real start latent; actions and control follow the window."""
    teacher = load_teacher(world["teacher"], "cpu")
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(2), 4, seed=0)
    roll = torch.randn(2, 16, 4, 12, 16)
    wc, clip = dmd.window_conditions(cond, roll, 2)
    torch.testing.assert_close(clip, roll[:, :, 1:])  # frame 1 is the image of frames 2, 3
    torch.testing.assert_close(wc.actions, cond.actions[:, 2:])
    torch.testing.assert_close(wc.control[:, :, 1:], cond.control[:, :, 3:])
    wc, clip = dmd.window_conditions(cond, roll, 2, image="start")
    torch.testing.assert_close(clip[:, :, :1], cond.first_latent.float())
    torch.testing.assert_close(clip[:, :, 1:], roll[:, :, 2:])
    noisy = [dmd.window_conditions(cond, roll, 2, "rollout", 0.1, torch.Generator().manual_seed(3))[1] for _ in "ab"]
    torch.testing.assert_close(noisy[0], noisy[1])
    diff = noisy[0][:, :, 0] - roll[:, :, 1]
    assert 0.05 < diff.std() < 0.3 and torch.equal(noisy[0][:, :, 1:], roll[:, :, 2:])
    wc, clip = dmd.window_conditions(cond, roll[:, :, 2:], 2, "rollout", 0.1, torch.Generator())
    torch.testing.assert_close(clip[:, :, :1], cond.first_latent.float())  # no rollout frame before: the real one
    with pytest.raises(ValueError, match="window image 'middle'"):
        dmd.window_conditions(cond, roll, 2, image="middle")


# -- the DMD gradient ---------------------------------------------------------------------------------------------
def test_dmd_gradient_is_zero_when_the_critic_is_the_teacher(world):
    teacher = load_teacher(world["teacher"], "cpu")
    critic = make_critic(teacher, teacher.dit)
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(2), 3, seed=0)
    clip = torch.randn(2, 16, 4, 12, 16, requires_grad=True)
    real = dmd.teacher_denoiser(teacher, teacher.dit, cond, clip)
    fake = dmd.teacher_denoiser(teacher, critic, cond, clip)
    g = torch.Generator().manual_seed(0)
    sigma = losses.draw_sigma(2, 0.02, 0.98, 3.0, "cpu", g)
    loss, stats = losses.dmd_loss(clip, real, fake, sigma, torch.randn(clip.shape, generator=g))
    loss.backward()
    assert float(stats["grad_norm"]) < 1e-5 and clip.grad.abs().max() < 1e-6
    # a critic that differs gives a gradient
    randomize_(critic, std=0.05, seed=9)
    fake = dmd.teacher_denoiser(teacher, critic, cond, clip)
    _, stats = losses.dmd_loss(clip, real, fake, sigma, torch.randn(clip.shape, generator=g))
    assert float(stats["grad_norm"]) > 1e-3


def test_dmd_step_moves_samples_towards_the_teacher():
    """Oracles: the teacher's distribution is a point at ``a``, the student's (what an ideal critic tracks) a point
    at its sample; gradient steps on the DMD loss move the sample to ``a``."""
    a = torch.randn(3, 16, 2, 4, 4)
    x = torch.nn.Parameter(a + torch.randn_like(a))
    opt = torch.optim.SGD([x], lr=1.0)
    start = (x - a).norm().item()
    for _ in range(20):
        real = lambda xt, s: a  # noqa: E731
        fake = lambda xt, s: x.detach()  # noqa: E731
        sigma = torch.full((3,), 0.5)
        loss, _ = losses.dmd_loss(x, real, fake, sigma, torch.randn_like(a))
        opt.zero_grad()
        (loss * x.numel() / 3).backward()
        opt.step()
    assert (x - a).norm().item() < 0.2 * start


# -- stages: a few steps lower the loss, resume is bit-exact -------------------------------------------------------
def test_ode_init_lowers_its_loss_on_a_fixed_batch(world):
    teacher = load_teacher(world["teacher"], "cpu")
    cfg = ode_init.ODEInitConfig(batch_size=3, window_frames=4)
    tensors, captions, meta = shards.read_set(world["pairs"], "pairs")
    student = make_student(teacher)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    stream = stream_config(cfg)
    cond, noisy, sigma, target = ode_init.ode_batch(teacher, tensors, captions, meta["sigmas"], cfg, 0, 0)
    first = None
    for _ in range(8):
        loss = losses.regression_loss(rollout.teacher_forced(student, stream, cond, noisy, sigma, target), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_critic_lowers_its_loss_on_a_fixed_window(world):
    teacher = load_teacher(world["teacher"], "cpu")
    critic = make_critic(teacher, teacher.dit)
    cfg = stage(world, Path("/nonexistent"), dmd.DMDConfig)
    tensors, captions, _ = shards.read_set(world["cond"], "conditions")
    cond = conditions_of(teacher, tensors, captions, torch.arange(3), 3, seed=0)
    clip = torch.cat([cond.first_latent, torch.randn(3, 16, 3, 12, 16)], 2)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    vals = []
    for _ in range(25):
        loss = dmd.critic_loss(critic, teacher, cond, clip, cfg, torch.Generator().manual_seed(0))
        vals.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert vals[-1] < 0.9 * vals[0]


def params(path: Path, key: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


@pytest.mark.parametrize("kind", ["ode-init", "dmd"])
def test_stage_resume_after_a_kill_is_bit_exact(world, tmp_path, kind):
    cls, run, sub, key = {
        "ode-init": (ode_init.ODEInitConfig, ode_init.train, "ode_init", "student"),
        "dmd": (dmd.DMDConfig, dmd.train, "dmd", "student"),
    }[kind]
    straight = stage(world, tmp_path / "a", cls, max_steps=3)
    run(straight)
    killed = stage(world, tmp_path / "b", cls, max_steps=2)
    run(killed)  # stops at step 2 as a kill after the step-2 checkpoint would
    run(dataclasses.replace(killed, max_steps=3))
    a, b = params(tmp_path / "a" / sub / "checkpoint.pt", key), params(tmp_path / "b" / sub / "checkpoint.pt", key)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "a" / sub / "export" / "config.json").exists()


def test_dmd_trains_end_to_end_with_validation_and_long_rollouts(world, tmp_path):
    cfg = stage(world, tmp_path, dmd.DMDConfig, max_steps=2, rollout_frames=4, critic_replay=4, val_every=1)
    result = dmd.train(cfg)
    assert result["step"] == 2 and "val_latent_psnr_4" in result and "val_latent_sharpness" in result
    assert (tmp_path / "dmd" / "critic" / "config.json").exists()


def test_dmd_trains_a_last_pass_student_and_records_it(world, tmp_path):
    dmd.train(stage(world, tmp_path, dmd.DMDConfig, max_steps=1, cache_write="last_pass"))
    result = json.loads((tmp_path / "dmd" / "export" / "result.json").read_text())
    assert result["cache_write"] == "last_pass" and result["timesteps"] == StageConfig.timesteps
    with pytest.raises(ValueError, match="cache_write"):  # its checkpoint resumes only as what it was
        dmd.train(stage(world, tmp_path, dmd.DMDConfig, max_steps=2))


def test_a_checkpoint_from_before_cache_write_resumes_as_the_clean_cache_it_was(world, tmp_path):
    from distillation.training.checkpoint import atomic_save, load_checkpoint

    dmd.train(stage(world, tmp_path, dmd.DMDConfig, max_steps=1))
    path = tmp_path / "dmd" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    del ckpt["config"]["cache_write"]  # as the trainer wrote it before the setting existed
    atomic_save(ckpt, path)
    with pytest.raises(ValueError, match="cache_write"):
        dmd.train(stage(world, tmp_path, dmd.DMDConfig, max_steps=2, cache_write="last_pass"))
    assert dmd.train(stage(world, tmp_path, dmd.DMDConfig, max_steps=2))["step"] == 2


def test_critic_rollouts_reuse_one_rollout_per_update(world, tmp_path, monkeypatch):
    """--critic-rollouts 1: one fresh rollout for the critic's steps and one for the generator, per update."""
    calls = []
    real = dmd.self_rollout
    monkeypatch.setattr(dmd, "self_rollout", lambda *a, **k: calls.append(1) or real(*a, **k))
    dmd.train(stage(world, tmp_path / "old", dmd.DMDConfig, max_steps=2, critic_steps=3))
    old = len(calls)
    calls.clear()
    dmd.train(stage(world, tmp_path / "new", dmd.DMDConfig, max_steps=2, critic_steps=3, critic_rollouts=1))
    assert (old, len(calls)) == (2 * (3 + 1), 2 * (1 + 1))


def test_critic_warmup_trains_the_critic_alone(world, tmp_path):
    """A fresh critic catches up with a student trained before; the student does not move during it."""
    cfg = stage(world, tmp_path, dmd.DMDConfig, max_steps=0, critic_warmup=2, critic_lr=1e-3, warmup=1)
    dmd.train(cfg)
    teacher = load_teacher(world["teacher"], "cpu")
    student, critic = WanDiT(teacher.dit.cfg), WanDiT(teacher.dit.cfg)
    teacher_lib.load_export_dit(tmp_path / "dmd" / "export", student)
    teacher_lib.load_export_dit(tmp_path / "dmd" / "critic", critic)
    ref = {k: v.to(torch.bfloat16).float() for k, v in teacher.dit.state_dict().items()}  # the exports are bf16
    assert all(torch.equal(v, ref[k]) for k, v in student.state_dict().items())
    assert not all(torch.equal(v, ref[k]) for k, v in critic.state_dict().items())
    log = [json.loads(line) for line in (tmp_path / "dmd" / "log.jsonl").read_text().splitlines()]
    assert log[0]["critic_warmup"] == 2


@pytest.mark.parametrize("kind", ["ode-init", "dmd", "dmd-rolling"])
def test_gradient_checkpointing_takes_the_same_step(world, tmp_path, kind):
    """Recomputing blocks in the backward sees the KV cache as the forward did (later frames were written into it
    meanwhile; in dmd-rolling the window also rolled), so the update equals the one without checkpointing."""
    cls, run, sub = {
        "ode-init": (ode_init.ODEInitConfig, ode_init.train, "ode_init"),
        "dmd": (dmd.DMDConfig, dmd.train, "dmd"),
        "dmd-rolling": (dmd.DMDConfig, dmd.train, "dmd"),
    }[kind]
    extra = dict(window_frames=2, sink_frames=1, rollout_frames=4, window=3) if kind == "dmd-rolling" else {}
    for name, gc in (("plain", False), ("gc", True)):
        run(stage(world, tmp_path / name, cls, max_steps=1, grad_checkpointing=gc, **extra))
    a = params(tmp_path / "plain" / sub / "checkpoint.pt", "student")
    b = params(tmp_path / "gc" / sub / "checkpoint.pt", "student")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_student_that_does_not_fit_is_refused_before_training(world, tmp_path):
    cfg = WanDiTConfig(control_dim=7, **{**TINY, "text_dim": 48})
    with pytest.raises(ValueError, match="text_dim"):
        check_fits(cfg, WanDiTConfig(control_dim=7, **TINY))
    folder = tmp_path / "bad"
    folder.mkdir()
    bad = WanDiT(cfg)
    from world_model.checkpoints.saving import save_checkpoint

    save_checkpoint(bad, folder, dtype=torch.bfloat16, overwrite=True)
    with pytest.raises(ValueError, match="does not fit the teacher.*text_dim"):
        ode_init.train(stage(world, tmp_path / "run", student_config=str(folder), max_steps=1))
    assert not (tmp_path / "run" / "ode_init" / "checkpoint.pt").exists()


@pytest.mark.parametrize("critic_init", ["student", "teacher"])
def test_a_smaller_student_distils_from_a_larger_teacher(world, tmp_path, critic_init):
    folder = tmp_path / "small"
    folder.mkdir()
    from world_model.checkpoints.saving import save_checkpoint

    save_checkpoint(WanDiT(WanDiTConfig(control_dim=7, **{**TINY, "num_layers": 1})), folder, overwrite=True)
    result = dmd.train(
        stage(world, tmp_path, dmd.DMDConfig, student_config=str(folder), critic_init=critic_init, max_steps=1)
    )
    assert result["step"] == 1
    # The student keeps its own size; the critic is a copy of the network it was configured to start from.
    ckpt = load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")
    blocks = {part: {k.split(".")[1] for k in ckpt[part] if k.startswith("blocks.")} for part in ("student", "critic")}
    assert len(blocks["student"]) == 1
    assert len(blocks["critic"]) == (1 if critic_init == "student" else TINY["num_layers"])


def run_stage(stage: str, args: list[str], out: Path, procs: int = 1, port: int = 0) -> None:
    """``python -m distillation.dmd <stage> <args> --out <out>``, under ``torchrun --nproc_per_node <procs>`` (gloo,
    on ``port``) when ``procs`` > 1; fails the test with the end of its stderr if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m"]
    if procs > 1:
        cmd += ["torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(port), "-m"]
    cmd += ["distillation.dmd", stage, *args, "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_processes_equal_one_with_accumulation(world, tmp_path):
    """torchrun --nproc_per_node 2 (gloo) takes the same update as one process accumulating 2 micro-batches."""
    common = [
        "--teacher", str(world["teacher"]), "--pairs", str(world["pairs"]), "--val-every", "0", "--device", "cpu",
        "--batch-size", "2", "--max-steps", "2", "--window-frames", "4", "--warmup", "1",
    ]  # fmt: skip
    run_stage("ode-init", [*common, "--accumulate", "2"], tmp_path / "one")
    run_stage("ode-init", [*common, "--accumulate", "1"], tmp_path / "two", procs=2, port=29611)
    a = params(tmp_path / "one" / "ode_init" / "checkpoint.pt", "student")
    b = params(tmp_path / "two" / "ode_init" / "checkpoint.pt", "student")
    moved = False
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    t0 = teacher_lib.load_teacher_export(world["teacher"])[0].state_dict()
    moved = any(not torch.allclose(a[k], t0[k].float()) for k in a)
    assert moved  # the update did something


# -- FSDP2 (--parallel fsdp): two gloo processes on CPU ------------------------------------------------------------
def assert_same_run(a: Path, b: Path, parts: tuple[str, ...]) -> None:
    """Two run folders of a stage hold the same training state (weights, EMA, AdamW moments of the same parameters,
    step) and logged the same global gradient norms (AdamW and the clip are nearly blind to a gradient's scale: the
    norm is what shows a wrong division), within float tolerance."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["step"] == cb["step"]
    for part in parts:
        x, y = ca[part], cb[part]
        if "param_groups" in x:  # an optimizer
            assert x["param_groups"] == y["param_groups"], part
            assert sorted(x["state"]) == sorted(y["state"]), part  # moments of the same parameters
            x = {f"{i}.{n}": v for i, s in x["state"].items() for n, v in s.items()}
            y = {f"{i}.{n}": v for i, s in y["state"].items() for n, v in s.items()}
        assert list(x) == list(y), part
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=1e-5, atol=1e-6, msg=lambda m, w=f"{part} {k}": f"{w}: {m}")

    def norms(folder: Path) -> list[float]:
        recs = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return [r["grad_norm"] for r in recs if "grad_norm" in r]

    assert norms(a) and norms(a) == pytest.approx(norms(b), rel=1e-5)


def assert_same_export(a: Path, b: Path) -> None:
    from distillation.vae_export import read_safetensors_folder

    x, y = (read_safetensors_folder(f, "diffusion_pytorch_model") for f in (a, b))
    assert list(x) == list(y)
    for k in x:  # bf16: a float32 difference of 1e-7 may round to the neighbouring bf16 value
        torch.testing.assert_close(x[k].float(), y[k].float(), rtol=1e-2, atol=1e-3)


def test_fsdp_two_processes_equal_one_with_accumulation_and_resume_across_modes(world, tmp_path):
    """``--parallel fsdp`` on 2 gloo processes with 2 micro-batches each (gradient sync only on the last) takes the
    same ode-init updates as one process accumulating 4; its checkpoints (full state dicts) resume under fsdp and
    in one process, and one process's resume under fsdp, all to the same state; exports agree."""
    import shutil

    common = [
        "--teacher", str(world["teacher"]), "--pairs", str(world["pairs"]), "--val-every", "0", "--device", "cpu",
        "--batch-size", "2", "--window-frames", "4", "--warmup", "1", "--log-every", "1",
    ]  # fmt: skip
    one, fsdp = [*common, "--accumulate", "4"], [*common, "--accumulate", "2", "--parallel", "fsdp"]
    port = 29612
    run_stage("ode-init", [*one, "--max-steps", "1"], tmp_path / "one")  # one process, killed after step 1 ...
    shutil.copytree(tmp_path / "one", tmp_path / "one_then_fsdp")
    run_stage("ode-init", [*one, "--max-steps", "2"], tmp_path / "one")  # ... resumed: the reference
    run_stage("ode-init", [*fsdp, "--max-steps", "1"], tmp_path / "fsdp", procs=2, port=port)
    shutil.copytree(tmp_path / "fsdp", tmp_path / "fsdp_then_one")
    run_stage("ode-init", [*fsdp, "--max-steps", "2"], tmp_path / "fsdp", procs=2, port=port)
    run_stage("ode-init", [*one, "--max-steps", "2"], tmp_path / "fsdp_then_one")
    run_stage("ode-init", [*fsdp, "--max-steps", "2"], tmp_path / "one_then_fsdp", procs=2, port=port)
    ref = tmp_path / "one" / "ode_init"
    for other in ("fsdp", "fsdp_then_one", "one_then_fsdp"):
        assert_same_run(ref, tmp_path / other / "ode_init", ("student", "ema", "optimizer"))
    assert_same_export(ref / "export", tmp_path / "fsdp" / "ode_init" / "export")
    t0 = teacher_lib.load_teacher_export(world["teacher"])[0].state_dict()
    a = params(ref / "checkpoint.pt", "student")
    assert any(not torch.allclose(a[k], t0[k].float()) for k in a)  # the updates did something


@pytest.mark.slow
def test_fsdp_dmd_equals_one_process_with_validation_and_resume(world, tmp_path):
    """DMD under ``--parallel fsdp`` (student, critic, EMA and teacher sharded; 2 processes x 2 micro-batches,
    killed after step 1 and resumed) takes the updates of one process accumulating 4; its validation (on a full
    copy gathered to the main process) and its exports agree. No ``--critic-replay``: each process replays its own
    windows, so a replaying run depends on the process layout under ddp as under fsdp."""
    common = [
        "--teacher", str(world["teacher"]), "--conditions", str(world["cond"]), "--val-conditions", str(world["val"]),
        "--val-every", "1", "--val-clips", "2", "--device", "cpu", "--batch-size", "2", "--window-frames", "4",
        "--warmup", "1", "--log-every", "1", "--window", "3", "--rollout-frames", "4", "--critic-steps", "2",
    ]  # fmt: skip
    run_stage("dmd", [*common, "--accumulate", "4", "--max-steps", "2"], tmp_path / "one")
    fsdp = [*common, "--accumulate", "2", "--parallel", "fsdp"]
    run_stage("dmd", [*fsdp, "--max-steps", "1"], tmp_path / "fsdp", procs=2, port=29613)
    run_stage("dmd", [*fsdp, "--max-steps", "2"], tmp_path / "fsdp", procs=2, port=29613)
    a, b = tmp_path / "one" / "dmd", tmp_path / "fsdp" / "dmd"
    assert_same_run(a, b, ("student", "critic", "ema", "opt_student", "opt_critic"))
    for sub in ("export", "critic"):
        assert_same_export(a / sub, b / sub)

    def val(folder: Path) -> list[float]:
        recs = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return [r["val_latent_psnr_4"] for r in recs if "val_latent_psnr_4" in r]

    assert len(val(a)) >= 2 and val(a)[-1] == pytest.approx(val(b)[-1], rel=1e-5)


def test_parallel_flag_is_a_choice_with_help():
    r = subprocess.run([sys.executable, "-m", "distillation.dmd", "ode-init", "--help"], capture_output=True, text=True)
    text = " ".join(r.stdout.split())
    assert "--parallel {ddp,fsdp}" in text and "FSDP2, per DiT block (large models)" in text
    assert "(default: ddp)" in text
    r = subprocess.run([sys.executable, "-m", "distillation.dmd", "dmd", "--parallel", "zero3"], capture_output=True)
    assert r.returncode != 0 and b"invalid choice" in r.stderr
    with pytest.raises(ValueError, match="ddp, fsdp"):
        init_parallel("cpu", "zero3")
    par, _ = init_parallel("cpu", "fsdp")  # one process: nothing to shard, the plain path
    assert not par.sharded and par.state_of(torch.nn.Linear(1, 1)) is not None


def test_dmd_cli_help_explains_every_stage():
    r = subprocess.run([sys.executable, "-m", "distillation.dmd", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and all(s in r.stdout for s in ("conditions", "ode-pairs", "ode-init", "dmd", "export"))
    r = subprocess.run([sys.executable, "-m", "distillation.dmd", "dmd", "--help"], capture_output=True, text=True)
    assert "--critic-steps" in r.stdout and "critic updates per generator update" in r.stdout


def test_copy_of_teacher_is_the_student(world):
    teacher = load_teacher(world["teacher"], "cpu")
    student = make_student(teacher)
    for (k, a), b in zip(teacher.dit.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.dit.parameters())


def test_conditions_encode_a_few_clips_at_a_time_and_fill_shards_exactly(tmp_path, monkeypatch):
    """A 512-clip shard of whole videos collated at once needed ~22 GB (killed here); the set is now built from
    batches of at most ENCODE_CLIPS clips, shards still get shard_clips rows, and the start latents are the VAE's."""
    from distillation.dmd import conditions
    from distillation.vae_export import load_exported_vae

    asked, g = [], torch.Generator().manual_seed(0)

    def fake_batches(source, batch_size, steps, device, **kw):
        asked.append(batch_size)
        while True:
            video = torch.rand(batch_size, 3, 4 * steps + 1, 96, 128, generator=g) * 2 - 1
            yield {
                "video": video,
                "actions": torch.rand(batch_size, steps, 6, generator=g),
                "captions": ["c"] * batch_size,
            }

    monkeypatch.setattr(conditions, "clip_batches", fake_batches)
    monkeypatch.setattr(conditions, "ENCODE_CLIPS", 3)
    from helpers import tiny_vae_export

    vae_dir = str(tiny_vae_export(tmp_path / "vae"))
    cfg = conditions.ConditionsConfig(vae=vae_dir, out=str(tmp_path / "c"), clips=7, steps=1, shard_clips=4,
                                      device="cpu")  # fmt: skip
    conditions.build(cfg)
    tensors, captions, _ = shards.read_set(tmp_path / "c", "conditions")
    assert asked == [3] and len(captions) == 7 and tensors["first_latent"].shape == (7, 16, 1, 12, 16)
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert sorted(s["rows"] for s in index["shards"].values()) == [3, 4]
    vae = load_exported_vae(vae_dir, torch.device("cpu"), decoder=False)
    g.manual_seed(0)  # the first batch again: its first clip's start latent is what the set holds
    video = torch.rand(3, 3, 5, 96, 128, generator=g) * 2 - 1
    with torch.no_grad():
        first = vae.encode(video[:, :, :1].to(vae.dtype), chunked=False).to(torch.bfloat16)
    assert torch.equal(tensors["first_latent"][:3], first)


def test_rollout_lengths_are_drawn_per_update_within_the_range(world, tmp_path, monkeypatch):
    """--rollout-frames-min: each update's rollouts (critic's and generator's alike) share one length drawn from
    [min, rollout_frames]; over many updates every length comes up; 0 keeps the fixed length; a bad range is refused."""
    base = stage(world, tmp_path / "cfg", dmd.DMDConfig, rollout_frames=4, rollout_frames_min=3)
    lengths = [dmd.rollout_length(base, s) for s in range(60)]
    assert set(lengths) == {3, 4}
    assert {dmd.rollout_length(dataclasses.replace(base, rollout_frames_min=0), s) for s in range(20)} == {4}
    with pytest.raises(ValueError, match="rollout-frames-min"):
        dmd.train(dataclasses.replace(base, rollout_frames_min=5))
    seen: list[tuple[int, int]] = []
    real = dmd.self_rollout
    monkeypatch.setattr(
        dmd, "self_rollout", lambda s, st, cond, *a, **k: seen.append(cond.frames) or real(s, st, cond, *a, **k)
    )
    cfg = dataclasses.replace(base, out=str(tmp_path / "run"), max_steps=3, critic_rollouts=1, critic_steps=1)
    dmd.train(cfg)
    # per update: one critic rollout and one generator rollout, of that update's length (warm-up draws at step 0)
    assert seen[-6:] == [dmd.rollout_length(cfg, s) for s in range(3) for _ in range(2)]
