"""The adversarial term of the decoder trainers: the discriminator and its losses learn, the trainers resume
bit-exactly with it after a kill, and with it off they are the trainers they were before it existed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from adv_off_reference import GOLDEN, RUNS, _vae_source
from test_vae import random_vae, random_video, single_thread  # noqa: F401 (autouse)
from test_vae_light_decoder import TINY, _same_state

from distillation import train_vae
from distillation.train_light_decoder import TrainConfig, build_parser, train_light_decoder
from distillation.training import adversarial
from distillation.training.adversarial import (
    LOSSES,
    PARTS,
    AdversarialConfig,
    Adversary,
    PatchDiscriminator,
    adaptive_weight,
    video_frames,
)
from distillation.training.budget import TimeBudget
from distillation.training.checkpoint import CheckpointFormatError, load_checkpoint
from distillation.training.cli import field_comments
from distillation.training.optim import fused_adamw
from world_model.vae import LightDecoder

TINY_DISC = dict(width=8, layers=2)
# The trainers' settings for the tests: the discriminator learns from step 1 and weighs in fully from step 2.
ADV = dict(adv_weight=0.5, adv_start=1, adv_warmup=2, disc_lr=1e-3, disc_width=8, disc_layers=2)
ADV_LOG_KEYS = {"adv_loss", "adv_weight", "disc_loss", "logits_real", "logits_fake", "disc_grad_norm", "disc_lr"}


def textured(n: int = 8, hw: int = 16, seed: int = 0) -> torch.Tensor:
    """Frames [n, 3, hw, hw] with pixel-scale texture (the detail the decoders lose)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, hw, hw, generator=g) * 2 - 1).clamp(-1, 1)


def blurred(frames: torch.Tensor) -> torch.Tensor:
    """What a pixel loss makes of them: the 4x4 averages."""
    return F.interpolate(F.avg_pool2d(frames, 4), scale_factor=4, mode="nearest")


def adversary(**kw) -> Adversary:
    cfg = AdversarialConfig(**{"weight": 1.0, "warmup": 0, "disc_lr": 2e-3, "adaptive": False, **TINY_DISC, **kw})
    adv = Adversary(cfg, "cpu")
    adv.begin(0)
    adv.schedule(0, TimeBudget(None), 0.0)
    return adv


# ------------------------------------------------------------------------------------------ the pieces


def test_patch_discriminator_scores_every_frame_per_patch():
    disc = PatchDiscriminator(width=8, layers=3)
    assert disc(torch.zeros(5, 3, 16, 24)).shape == (5, 1, 2, 3)  # a logit per 8x8 patch
    video = random_video(2, 5, 16, 16)
    frames = video_frames(video)
    assert frames.shape == (10, 3, 16, 16) and torch.equal(frames[6], video[1, :, 1])  # clip 1, frame 1
    assert video_frames(frames) is frames
    # GroupNorm, not BatchNorm: a frame's score does not depend on the rest of the batch.
    with torch.no_grad():
        assert torch.allclose(disc(frames)[:1], disc(frames[:1]), atol=1e-6)
    with pytest.raises(ValueError, match="smaller than"):
        disc(torch.zeros(1, 3, 4, 16))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        disc(video)
    for bad in (dict(weight=0.0), dict(loss="wasserstein"), dict(start=-1), dict(disc_lr=0.0)):
        with pytest.raises(ValueError):
            AdversarialConfig(**bad)


def test_the_losses_have_their_textbook_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    d_hinge, g_hinge = LOSSES["hinge"]
    assert d_hinge(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    assert g_hinge(fake).item() == pytest.approx(1.0)
    d_ns, g_ns = LOSSES["nonsaturating"]
    assert d_ns(real, fake).item() == pytest.approx(0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()))
    assert g_ns(fake).item() == pytest.approx(-F.logsigmoid(fake).mean().item())


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_discriminator_loss_falls_when_only_the_discriminator_trains(loss):
    adv = adversary(loss=loss)
    real = textured()
    fake = blurred(real).requires_grad_(True)
    terms = [adv.discriminator_step(real, fake) for _ in range(12)]
    losses = [t["disc_loss"].item() for t in terms]
    assert losses[-1] < 0.8 * losses[0], losses
    assert terms[-1]["logits_real"] > terms[-1]["logits_fake"]
    assert fake.grad is None  # the decoded frames are detached: the decoder learns nothing from this step
    assert all(torch.isfinite(t["disc_grad_norm"]) for t in terms)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_generator_loss_falls_when_only_the_decoder_trains_against_a_frozen_discriminator(loss):
    adv = adversary(loss=loss)
    torch.manual_seed(0)
    decoder = LightDecoder(TINY)
    latents = torch.randn(2, 16, 2, 2, 2)
    for _ in range(4):  # a discriminator that tells real frames from this decoder's
        adv.discriminator_step(textured(10), decoder(latents).detach())
    adv.optimizer.zero_grad(set_to_none=True)
    frozen = {k: v.clone() for k, v in adv.disc.state_dict().items()}
    opt = fused_adamw(decoder.parameters(), 3e-3)
    losses = []
    for step in range(10):
        term, terms = adv.generator_loss(decoder(latents), None, None, step)
        opt.zero_grad()
        term.backward()
        opt.step()
        losses.append(terms["adv_loss"].item())
        assert terms["adv_weight"].item() == 1.0  # warm-up 0, fixed weight
    assert losses[-1] < losses[0] - 0.1 * abs(losses[0]) - 1e-3, losses
    assert all(p.grad is None for p in adv.disc.parameters())  # frozen: no gradient reached it
    _same_state(frozen, adv.disc.state_dict(), "disc")


def test_adaptive_weight_balances_the_gradient_norms_at_the_last_layer():
    torch.manual_seed(0)
    decoder = LightDecoder(TINY)
    latents, target = torch.randn(1, 16, 2, 2, 2), random_video(1, 5, 16, 16)
    adv = adversary(adaptive=True, weight=0.5)
    pred = decoder(latents)
    rec = F.l1_loss(pred, target)
    term, terms = adv.generator_loss(pred, rec, decoder.conv_out.weight, 0)
    # By hand, on a fresh graph.
    pred2 = decoder(latents)
    g_rec = torch.autograd.grad(F.l1_loss(pred2, target), decoder.conv_out.weight, retain_graph=True)[0]
    g_adv = torch.autograd.grad(LOSSES["hinge"][1](adv.disc(video_frames(pred2))), decoder.conv_out.weight)[0]
    expected = 0.5 * g_rec.norm() / (g_adv.norm() + 1e-4)
    assert terms["adv_weight"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert term.item() == pytest.approx(expected.item() * terms["adv_loss"].item(), rel=1e-5)
    assert not terms["adv_weight"].requires_grad and term.requires_grad
    # Both graphs are still there for the trainer's backward, which leaves the discriminator untouched.
    (rec + term).backward()
    assert decoder.conv_out.weight.grad is not None and all(p.grad is None for p in adv.disc.parameters())
    pred = decoder(latents)  # a tiny pixel gradient against a huge GAN one: the GAN term weighs ~nothing
    assert adaptive_weight(1e-12 * pred.sum(), 1e6 * pred.sum(), decoder.conv_out.weight) < 1e-6
    with pytest.raises(ValueError, match="last layer"):
        adv.generator_loss(decoder(latents), rec, None, 0)


def test_the_term_starts_at_its_step_or_where_the_discriminator_was_added_and_warms_up():
    adv = Adversary(AdversarialConfig(weight=1.0, start=10, warmup=4, disc_lr=1e-3, **TINY_DISC), "cpu")
    adv.begin(0)  # a new run
    budget = TimeBudget(None)
    assert not adv.active(9) and adv.ramp(9) == 0.0 and adv.schedule(9, budget, 0.0) == 0.0
    assert [adv.ramp(s) for s in (10, 11, 13, 20)] == [0.25, 0.5, 1.0, 1.0]
    assert adv.schedule(10, budget, 0.0) == pytest.approx(2.5e-4)
    assert adv.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    late = Adversary(AdversarialConfig(weight=1.0, start=10, warmup=4, disc_lr=1e-3, **TINY_DISC), "cpu")
    late.begin(100)  # added to a run at step 100: a fresh discriminator warms up from there
    assert late.start == 100 and not late.active(99) and late.ramp(100) == 0.25
    restored = Adversary(AdversarialConfig(weight=1.0, start=10, warmup=4, disc_lr=1e-3, **TINY_DISC), "cpu")
    restored.load_state_dict(late.state_dict())
    restored.begin(120)  # a resume keeps where it was added
    assert restored.start == 100 and restored.ramp(101) == 0.5
    assert set(late.parts()) == set(PARTS)


def test_building_the_discriminator_draws_nothing_from_the_trainers_random_streams():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    a = Adversary(AdversarialConfig(weight=1.0, seed=1, **TINY_DISC), "cpu")
    assert torch.equal(torch.get_rng_state(), before)
    b = Adversary(AdversarialConfig(weight=1.0, seed=1, **TINY_DISC), "cpu")
    c = Adversary(AdversarialConfig(weight=1.0, seed=2, **TINY_DISC), "cpu")
    _same_state(a.disc.state_dict(), b.disc.state_dict(), "same seed")
    assert not torch.equal(a.disc.net[0].weight, c.disc.net[0].weight)


# -------------------------------------------------------------------------------- off: as before the term


def test_with_the_term_off_the_trainers_make_the_numbers_they_made_before_it(tmp_path, monkeypatch):
    """Both trainers, the term off and its module made unimportable (off, nothing of it may run), against what
    the code before the term produced (tests/data/adv_off_golden.json, see tests/data/README.md)."""
    monkeypatch.setitem(sys.modules, "distillation.training.adversarial", None)
    with pytest.raises(ImportError):
        from distillation.training.adversarial import Adversary  # noqa: F401, F811
    golden = json.loads(GOLDEN.read_text())
    for name, run in RUNS.items():
        got, want = run(tmp_path / name), golden[name]
        # Exact: what was drawn from torch's RNG, the checkpoint's parts (no discriminator), the logged keys.
        for key in ("rng_torch", "parts", "log_keys", "step"):
            assert got[key] == want[key], (name, key)
        # Float reductions differ between CPUs (their vector units), and three training steps carry that to about
        # 2e-5 relative (seen on a second machine: a latent std 1.6e-5 off, an SSIM of 0.0017 3.7e-8 off), so the
        # numbers match to 1e-4 relative (1e-6 absolute near 0); the RNG draws and parts above stay exact.
        assert got["losses"] == pytest.approx(want["losses"], rel=1e-4), name
        assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-4, abs=1e-6), name
        for part in [k for k in want if isinstance(want[k], dict) and "sha256" in want[k]]:
            assert got[part]["numel"] == want[part]["numel"], (name, part)
            for stat in ("sum", "sum_sq"):
                assert got[part][stat] == pytest.approx(want[part][stat], rel=1e-5), (name, part, stat)


def _ld_stream(start: int):
    step = start
    while True:
        yield random_video(1, 5, 16, 16, seed=100 + step)
        step += 1


def ld_cfg(**kw) -> TrainConfig:
    base = dict(steps=4, lr=1e-3, warmup=2, checkpoint_every=1, log_every=1, ema=0.9, real_weight=0.5, progress=False)
    return TrainConfig(**{**base, **kw})


def ld_run(out, **kw):
    return train_light_decoder(random_vae(), _ld_stream, out, TINY, ld_cfg(**kw))


def test_before_its_start_a_run_with_the_term_is_the_run_without_it(tmp_path):
    off = ld_run(tmp_path / "off", steps=3)
    on = ld_run(tmp_path / "on", steps=3, **{**ADV, "adv_start": 3})
    assert on.losses == off.losses
    a, b = load_checkpoint(tmp_path / "off" / "checkpoint.pt"), load_checkpoint(tmp_path / "on" / "checkpoint.pt")
    for part in ("student", "optimizer", "ema"):
        _same_state(a[part], b[part], part)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the discriminator's init drew nothing from it
    assert set(b) - set(a) == set(PARTS) and not b["disc_optimizer"]["state"]  # built, never stepped


# ----------------------------------------------------------------------------- on: logged, resumed exactly


def _logged(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_term_added_to_a_run_trained_without_it_starts_there_with_a_fresh_discriminator(tmp_path):
    ld_run(tmp_path, steps=2)
    ld_run(tmp_path, steps=4, **{**ADV, "adv_start": 0})
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["adversary"] == {"added_at": 2} and ckpt["disc_optimizer"]["state"]
    log = [r for r in _logged(tmp_path) if "loss" in r]
    assert [bool(ADV_LOG_KEYS & set(r)) for r in log] == [False, False, True, True]
    assert [r["disc_lr"] for r in log[2:]] == pytest.approx([5e-4, 1e-3])  # warms up from step 2
    ld_run(tmp_path, steps=5, **{**ADV, "adv_start": 0})  # resumed with it: still added at 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["adversary"] == {"added_at": 2}


@pytest.mark.slow
def test_vae_decoder_fine_tuning_with_the_term_keeps_the_latents_and_warms_up_from_the_export(tmp_path):
    """The VAE trainer's intended use: --freeze-encoder --init-from an export, with the term from its step."""
    from distillation import vae_export
    from world_model.vae import is_encoder_key

    vae_runner(tmp_path / "first", 2, adv=False)
    first = tmp_path / "first" / "export"
    base = dict(out=str(tmp_path / "tuned"), dim=8, batch_size=2, warmup=1, lr=1e-3, log_every=1, device="cpu")
    cfg = train_vae.VAETrainConfig(
        **base, replay_clips=0, max_steps=4, freeze_encoder=True, init_from=str(first), **{**ADV, "adv_start": 0}
    )
    train_vae.train(cfg, _vae_source)
    ckpt = load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")
    assert ckpt["adversary"] == {"added_at": 2}  # the export's step: the new discriminator warms up there
    log = [r for r in _logged(tmp_path / "tuned") if "loss" in r]
    assert [r["step"] for r in log] == [3, 4] and all(set(r) >= ADV_LOG_KEYS for r in log)
    assert [r["disc_lr"] for r in log] == pytest.approx([5e-4, 1e-3])
    assert [r["adv_weight"] > 0 for r in log] == [True, True]
    before, after = vae_export.load_exported_vae(first), vae_export.load_exported_vae(tmp_path / "tuned" / "export")
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if is_encoder_key(k))
    assert any(not torch.equal(old[k], new[k]) for k in old if not is_encoder_key(k))


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[4])
import torch
torch.set_num_threads(1)
import test_adversarial as t
t.{runner}(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "adv")
"""


def ld_runner(out, steps: int, adv: bool = True):
    return ld_run(Path(out), steps=steps, **(ADV if adv else {}))


def vae_runner(out, steps: int, adv: bool = True):
    base = dict(out=str(out), dim=8, batch_size=2, warmup=1, lr=1e-3, log_every=1, device="cpu", replay_clips=0)
    cfg = train_vae.VAETrainConfig(**{**base, "max_steps": steps, "checkpoint_every": 1, **(ADV if adv else {})})
    return train_vae.train(cfg, _vae_source)


def _kill_after(runner: str, out: Path, at_least: int) -> int:
    """Start ``runner`` in a process, SIGKILL it once its checkpoint is at ``at_least`` steps; the step it holds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    script = KILLED_RUN.format(runner=runner)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out), "1000", "adv", str(Path(__file__).parent)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if (load_checkpoint(out / "checkpoint.pt") or {"step": -1})["step"] >= at_least:
                    break
            except CheckpointFormatError:  # replaced by the next one while this reader had it open in two reads
                pass
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return load_checkpoint(out / "checkpoint.pt")["step"]


@pytest.mark.parametrize(
    "runner, model", [("ld_runner", "student"), pytest.param("vae_runner", "model", marks=pytest.mark.slow)]
)
def test_with_the_term_on_a_killed_run_resumes_bit_exactly(tmp_path, runner, model):
    """SIGKILLed at any moment after the term started, a run resumes from its atomic checkpoint and ends
    bit-identical to one never stopped: decoder, its Adam state, EMA, discriminator and its Adam state."""
    run = globals()[runner]
    killed = tmp_path / "killed"
    step = _kill_after(runner, killed, at_least=3)  # the term starts at 1: the discriminator has trained
    assert step >= 3
    run(killed, step + 2)
    run(tmp_path / "straight", step + 2)
    a, b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert a["step"] == b["step"] == step + 2
    for part in (model, "optimizer", "ema", *PARTS):
        _same_state(a[part], b[part], part)
    assert a["disc_optimizer"]["state"] and a["adversary"] == {"added_at": 0}
    # The discriminator's losses and logits are logged from the term's start on, the same in both runs (the
    # killed run's log, then its resume's).
    log = [r for r in _logged(tmp_path / "straight") if "loss" in r]
    assert [r["step"] for r in log] == list(range(1, step + 3))
    assert not ADV_LOG_KEYS & set(log[0]) and all(set(r) >= ADV_LOG_KEYS for r in log[1:])
    resumed = {r["step"]: r for r in _logged(killed) if "loss" in r}
    for r in log[1:]:
        assert {k: r[k] for k in ADV_LOG_KEYS} == {k: resumed[r["step"]][k] for k in ADV_LOG_KEYS}, r["step"]


# ------------------------------------------------------------------------------------------------- --help


def test_help_explains_each_new_knob(capsys):
    knobs = (
        "adv_weight",
        "adv_start",
        "adv_warmup",
        "disc_lr",
        "adv_loss",
        "adv_adaptive",
        "disc_width",
        "disc_layers",
    )
    parser = build_parser()
    helps = {a.dest: a.help for a in parser._actions}
    for knob in knobs:
        assert helps.get(knob) and len(helps[knob]) > 20, knob
        assert getattr(TrainConfig(), knob) == parser.get_default(knob), knob  # the CLI and the config agree
        assert getattr(train_vae.VAETrainConfig(), knob) == getattr(TrainConfig(), knob), knob
    comments = field_comments(train_vae.VAETrainConfig)
    assert all(len(comments.get(k, "")) > 20 for k in knobs)
    assert {f.name for f in dataclasses.fields(AdversarialConfig)} >= {"weight", "start", "warmup", "disc_lr"}
    assert adversarial.build_adversary(TrainConfig(adv_weight=0.2), "cpu").cfg.weight == 0.2
    with pytest.raises(SystemExit):
        train_vae.parse_args(["--help"])
    text = capsys.readouterr().out
    assert all(f"--{k.replace('_', '-')}" in text for k in knobs) and "--no-adv-adaptive" in text
