"""Training stages on tiny configs: the loss goes down on a fixed batch, and a stopped run resumes exactly."""

import dataclasses
import itertools
import json

import pytest
import torch
from helpers import tiny_vae_export

from distillation import teacher, train_teacher, train_vae, vae_export
from distillation.training.checkpoint import load_checkpoint
from world_model.vae import VAEConfig, WanVAE, is_encoder_key


def video_batch(step: int, b: int = 2, frames: int = 5, hw=(96, 128)) -> dict:
    """A smooth, step-dependent clip (upsampled noise) with actions and captions, like the game batches."""
    g = torch.Generator().manual_seed(step)
    low = torch.rand(b, 3, frames, hw[0] // 16, hw[1] // 16, generator=g) * 2 - 1
    video = torch.nn.functional.interpolate(low, size=(frames, *hw), mode="trilinear")
    actions = torch.rand(b, (frames - 1) // 4, 6, generator=g)
    return {"video": video, "actions": actions, "captions": ["a dark corridor", "an imp ahead"][:b]}


def source(split, start):
    return (video_batch(s if split == "train" else 10_000 + s) for s in itertools.count(start))


def small_source(split, start):
    """Like :func:`source` at 32x48: what the VAE resume tests need, fast."""
    return (video_batch(s if split == "train" else 10_000 + s, hw=(32, 48)) for s in itertools.count(start))


def tracked(make, closed: list):
    """``make`` (a batch source) whose iterators append their split to ``closed`` when closed."""

    def source_(split, start):
        try:
            yield from make(split, start)
        finally:
            closed.append(split)

    return source_


def vae_cfg(tmp_path, **kw):
    base = dict(out=str(tmp_path), dim=8, batch_size=2, warmup=1, lr=1e-3, log_every=1, device="cpu", replay_clips=0)
    return train_vae.VAETrainConfig(**{**base, **kw})


def test_vae_step_reduces_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=8))
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    batch = video_batch(0, hw=(32, 48))["video"]
    cfg = train_vae.VAETrainConfig()
    losses = []
    for _ in range(6):
        torch.manual_seed(1)  # same latent sample each step: only the weights change
        recon, mu, logvar = train_vae.reconstruct(vae, batch)
        loss, _ = train_vae.vae_loss(batch, recon, mu, logvar, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_vae_mse_term_adds_the_squared_error_at_its_weight():
    torch.manual_seed(0)
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    recon = video + 0.1 * torch.randn_like(video)
    mu, logvar = torch.randn(2, 4, 2, 2, 2), torch.zeros(2, 4, 2, 2, 2)
    base, terms = train_vae.vae_loss(video, recon, mu, logvar, train_vae.VAETrainConfig())
    with_mse, _ = train_vae.vae_loss(video, recon, mu, logvar, train_vae.VAETrainConfig(mse_weight=2.0))
    expected = torch.nn.functional.mse_loss(recon, video)
    assert torch.allclose(terms["mse"], expected)
    assert torch.allclose(with_mse - base, 2.0 * expected)


def test_vae_resume_continues_exactly(tmp_path):
    src = small_source
    train_vae.train(vae_cfg(tmp_path / "straight", max_steps=4), src)
    train_vae.train(vae_cfg(tmp_path / "resumed", max_steps=2), src)  # "killed" after 2 steps
    train_vae.train(vae_cfg(tmp_path / "resumed", max_steps=4), src)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    # The export carries what the next session needs.
    export = tmp_path / "resumed" / "export"
    vae = vae_export.load_exported_vae(export)
    assert vae.config.dim == 8 and len(vae.config.latent_std) == 16
    assert json.loads((export / "result.json").read_text())["exported"] in ("model", "ema")
    ema = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["ema"]
    raw = {k: v.to(torch.bfloat16).float() for k, v in b["model"].items()}
    chosen = raw if json.loads((export / "result.json").read_text())["exported"] == "model" else ema
    got = vae.state_dict()
    assert all(torch.equal(got[k], chosen[k].to(torch.bfloat16).float()) for k in chosen)
    # The encoder half loads alone (what the teacher's GPU box needs); a missing half is named.
    encoder = vae_export.load_exported_vae(export, decoder=False)
    assert not hasattr(encoder, "decoder") and torch.equal(encoder.encoder.conv1.weight, vae.encoder.conv1.weight)
    clip = video_batch(0, hw=(32, 48))["video"]
    assert encoder.dtype == torch.float32 and torch.equal(encoder.encode(clip), vae.encode(clip))
    # cast as the GPU box casts it (bf16 buffers too): the latent statistics are rebuilt without the decoder
    half = vae_export.load_exported_vae(export, dtype=torch.bfloat16, decoder=False)
    torch.testing.assert_close(half.encode(clip.bfloat16()).float(), vae.encode(clip), atol=0.1, rtol=0.05)
    (export / vae_export.DECODER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="vae_decoder.safetensors is missing"):
        vae_export.load_exported_vae(export)


def test_vae_trains_on_random_windows_and_validates_on_whole_frames(tmp_path, monkeypatch):
    assert train_vae.parse_crop("") is None and train_vae.parse_crop("64x48") == (64, 48)
    for bad in ("64", "60x64", "0x8", "axb"):
        with pytest.raises(ValueError, match="--crop"):
            train_vae.parse_crop(bad)
    video = video_batch(0, hw=(32, 48))["video"]
    gen = torch.Generator().manual_seed(0)
    windows = [train_vae.random_crop(video, (16, 24), gen) for _ in range(8)]
    assert all(w.shape == (*video.shape[:3], 16, 24) for w in windows)
    # Each window is the frame's pixels at some offset, and the offsets vary.
    found = set()
    for w in windows:
        hits = [(t, x) for t in range(17) for x in range(25) if torch.equal(video[..., t : t + 16, x : x + 24], w)]
        assert hits
        found.add(hits[0])
    assert len(found) > 1
    with pytest.raises(ValueError, match="larger than the 32x48 frames"):
        train_vae.random_crop(video, (40, 48), gen)
    trained, validated = [], []
    step_, evaluate_ = train_vae.optimisation_step, train_vae.evaluate

    def spy_step(forward, vae, opt, video, cfg):
        trained.append(tuple(video.shape[-2:]))
        return step_(forward, vae, opt, video, cfg)

    def spy_evaluate(vae, batches, num_batches=8):
        batches = list(batches)
        validated.extend(tuple(b["video"].shape[-2:]) for b in batches)
        return evaluate_(vae, iter(batches), num_batches)

    monkeypatch.setattr(train_vae, "optimisation_step", spy_step)
    monkeypatch.setattr(train_vae, "evaluate", spy_evaluate)
    result = train_vae.train(vae_cfg(tmp_path, max_steps=2, crop="16x24"), small_source)
    assert result["step"] == 2
    assert trained == [(16, 24)] * 2 and validated and set(validated) == {(32, 48)}


def test_vae_decoder_fine_tuning_keeps_the_latents_of_its_init(tmp_path):
    with pytest.raises(ValueError, match="--init-from"):
        train_vae.train(vae_cfg(tmp_path / "none", max_steps=1, freeze_encoder=True), small_source)
    train_vae.train(vae_cfg(tmp_path / "first", max_steps=2), small_source)
    first = tmp_path / "first" / "export"
    cfg = vae_cfg(tmp_path / "tuned", max_steps=3, freeze_encoder=True, init_from=str(first), lr=1e-2)
    train_vae.train(cfg, small_source)
    before, after = vae_export.load_exported_vae(first), vae_export.load_exported_vae(tmp_path / "tuned" / "export")
    assert after.config.latent_mean == before.config.latent_mean and after.config.latent_std == before.config.latent_std
    old, new = before.state_dict(), after.state_dict()
    encoder_keys = [k for k in old if is_encoder_key(k)]
    assert encoder_keys and all(torch.equal(old[k], new[k]) for k in encoder_keys)
    assert any(not torch.equal(old[k], new[k]) for k in old if not is_encoder_key(k))
    # The checkpoint holds optimizer state for the decoder half only, and a resume must keep the setting.
    ckpt = load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")
    assert len(ckpt["optimizer"]["state"]) == sum(1 for k, _ in after.named_parameters() if not is_encoder_key(k))
    with pytest.raises(ValueError, match="freeze_encoder"):
        train_vae.train(dataclasses.replace(cfg, freeze_encoder=False, max_steps=4), small_source)


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[3])
import torch
from distillation import train_vae
from test_training import small_source, vae_cfg
torch.set_num_threads(1)
train_vae.train(vae_cfg(sys.argv[1], max_steps=int(sys.argv[2]), checkpoint_every=1), small_source)
"""


def test_vae_resumes_exactly_after_sigkill(tmp_path):
    """A run killed with SIGKILL (at whatever point it was) resumes from its last atomic checkpoint and ends
    bit-identical to a run that was never interrupted: model, Adam state and EMA."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(killed), "1000", tests], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            ckpt = killed / "checkpoint.pt"
            if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    step = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert step >= 2
    train_vae.train(vae_cfg(killed, max_steps=step + 2, checkpoint_every=1), small_source)
    train_vae.train(vae_cfg(tmp_path / "straight", max_steps=step + 2, checkpoint_every=1), small_source)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["step"] == b["step"] == step + 2
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def teacher_cfg(tmp_path, vae, **kw):
    base = dict(
        vae=str(vae),
        out=str(tmp_path),
        clip_steps=1,
        batch_size=2,
        replay_clips=4,
        warmup=1,
        lr=1e-3,
        log_every=1,
        val_every=10_000,
        val_clips=2,
        val_steps=2,
        device="cpu",
    )
    return train_teacher.TeacherTrainConfig(**{**base, **kw})


def test_teacher_step_reduces_loss_on_a_fixed_batch(tmp_path):
    dev = torch.device("cpu")
    torch.manual_seed(0)
    dit, text = teacher.build_models(dev)
    torch.nn.init.normal_(dit.head.head.weight, std=0.01)  # leave the zero init so gradients reach every layer
    cond = teacher.ClipConditioner(dev)
    x0 = torch.randn(2, 16, 2, 12, 16)
    actions = torch.rand(2, 1, 6)
    cfg = teacher_cfg(tmp_path, "unused", caption_dropout=0.0)
    opt = torch.optim.AdamW(list(dit.parameters()) + list(text.parameters()), lr=1e-3)
    losses = []
    for _ in range(5):
        gen = torch.Generator().manual_seed(0)  # same noise and timesteps every step
        loss = teacher.flow_loss(dit, text, cond, x0, actions, ["a room", "a door"], cfg, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_dropout_draws_on_the_cpu_at_its_rates_and_drops_captions_with_actions(tmp_path):
    caps = [f"room {i}" for i in range(4000)]
    cfg = teacher_cfg(tmp_path, "unused", caption_dropout=0.1, action_dropout=0.2)
    dropped, keep = train_teacher.draw_dropout(caps, cfg, torch.Generator().manual_seed(0))
    blank = torch.tensor([d == "" for d in dropped])
    assert keep.dtype == torch.bool and keep.device.type == "cpu"
    assert 700 < int((~keep).sum()) < 900  # 20% without actions
    assert bool(blank[~keep].all())  # ... and without their caption: the fully unconditional branch
    assert 0.07 < float(blank[keep].float().mean()) < 0.13  # the caption alone at its own rate
    assert all(d in ("", c) for d, c in zip(dropped, caps))
    again, keep2 = train_teacher.draw_dropout(caps, cfg, torch.Generator().manual_seed(0))
    assert again == dropped and torch.equal(keep, keep2)
    none = teacher_cfg(tmp_path, "unused", caption_dropout=0.0, action_dropout=0.0)
    assert train_teacher.draw_dropout(caps[:5], none, torch.Generator())[0] == caps[:5]


def test_dropped_actions_are_the_null_control(tmp_path):
    """A clip whose actions are dropped is seen with zero control (whatever its actions), the others unchanged."""
    torch.manual_seed(0)
    dit, text = teacher.build_models(torch.device("cpu"))
    cond = teacher.ClipConditioner(torch.device("cpu"))
    seen = []
    dit.forward = lambda x, t, ctx, y, control: seen.append(control) or torch.zeros_like(x)
    cfg = teacher_cfg(tmp_path, "unused")
    x0, actions = torch.randn(2, 16, 2, 12, 16), torch.rand(2, 1, 6)
    keep = torch.tensor([True, False])
    teacher.flow_loss(dit, text, cond, x0, actions, ["a", "b"], cfg, torch.Generator(), keep)
    full = cond.control(actions)
    assert torch.equal(seen[0][0], full[0]) and full[1].abs().sum() > 0 and torch.equal(seen[0][1], 0 * full[1])


@pytest.mark.parametrize("guide_actions", [False, True])
def test_guidance_contrasts_the_actions_only_when_asked(guide_actions):
    torch.manual_seed(0)
    dit, text = teacher.build_models(torch.device("cpu"))
    cond = teacher.ClipConditioner(torch.device("cpu"))
    prepared, real = [], dit.prepare_control
    dit.prepare_control = lambda c: prepared.append(c) or real(c)
    actions = torch.rand(1, 1, 6)
    teacher.sample_clip(
        dit, text, cond, torch.randn(1, 16, 2, 12, 16), actions, ["a"], 1, 3.0, 3.0, guide_actions=guide_actions
    )
    assert torch.equal(prepared[0], cond.control(actions))
    if guide_actions:  # the unconditional branch gets the null action (zeros), as trained with action dropout
        assert len(prepared) == 2 and prepared[1].abs().sum() == 0
    else:
        assert len(prepared) == 1


def test_an_export_without_action_dropout_is_not_guided_on_actions(tmp_path):
    assert not teacher.guides_actions(tmp_path)  # no result.json
    (tmp_path / "result.json").write_text(json.dumps({"step": 5}))  # exports before action dropout existed
    assert not teacher.guides_actions(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({"step": 5, "action_dropout": 0.1}))
    assert teacher.guides_actions(tmp_path)


def test_teacher_resumes_from_its_checkpoint(tmp_path):
    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=2), source)
    first = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert first["step"] == 2 and (tmp_path / "run" / "export" / "text_encoder.safetensors").exists()
    assert teacher.guides_actions(tmp_path / "run" / "export")  # trained with action dropout (default)
    result = train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=3), source)
    assert result["step"] == 3
    second = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # The resumed run started from the saved optimizer state: its step counters continued from 2.
    state = second["optimizer"]["state"]
    assert all(int(s["step"]) == 3 for s in state.values())


def test_harness_guides_a_teacher_on_actions_as_trained_unless_told(tmp_path):
    from distillation.evaluation.models import TeacherSampling, model_from_spec

    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=1), source)
    spec = f"teacher:{tmp_path / 'run' / 'export'}:{vae}"
    guided_on = {
        g: model_from_spec(spec, teacher=TeacherSampling(guide_actions=g)).describe()["sampler"]["guidance_on"]
        for g in (None, False)
    }
    assert guided_on == {None: "caption and actions", False: "caption"}


def test_teacher_records_the_vae_latents_it_was_trained_on_and_the_harness_warns_on_another(tmp_path):
    from safetensors.torch import load_file, save_file

    from distillation.evaluation.models import model_from_spec
    from distillation.vae_export import DECODER_FILE, export_vae, latent_fingerprint
    from world_model.vae import VAEConfig, WanVAE

    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=1), source)
    export = tmp_path / "run" / "export"
    assert json.loads((export / "result.json").read_text())["vae_fingerprint"] == latent_fingerprint(vae)
    assert teacher.trained_on(export, vae)
    # A decoder-only fine-tune keeps the latents, so the teacher stays valid with it.
    decoder = {k: v + 1 for k, v in load_file(vae / DECODER_FILE).items()}
    save_file(decoder, str(vae / DECODER_FILE))
    assert teacher.trained_on(export, vae)
    # Another encoder (or other latent statistics) does not.
    torch.manual_seed(1)
    other = export_vae(WanVAE(VAEConfig(dim=8)), (tuple([0.0] * 16), tuple([1.0] * 16)), tmp_path / "other")
    torch.manual_seed(1)  # the same weights as `other`, other latent statistics
    restats = export_vae(WanVAE(VAEConfig(dim=8)), (tuple([0.1] * 16), tuple([1.0] * 16)), tmp_path / "restats")
    assert not teacher.trained_on(export, other) and not teacher.trained_on(export, restats)
    assert latent_fingerprint(other) != latent_fingerprint(restats)
    with pytest.warns(UserWarning, match="another VAE encoder"):
        model_from_spec(f"teacher:{export}:{other}")


def test_learning_rate_warms_up_from_the_fresh_optimizer_and_cools_down_with_the_budget():
    from distillation.training.budget import TimeBudget, learning_rate

    budget = TimeBudget(10.0)  # 600 s
    budget.start -= 300  # half the budget spent: before the cool-down
    assert learning_rate(1.0, 99, warmup=100, budget=budget, cooldown=0.25) == pytest.approx(1.0)
    # A run initialised from an export at step 1000 warms up again from there.
    assert learning_rate(1.0, 1049, warmup=100, budget=budget, cooldown=0.25, start=1000) == pytest.approx(0.5)
    budget.start -= 225  # 75 s of 600 left = half of the 150 s cool-down
    assert learning_rate(1.0, 5000, warmup=100, budget=budget, cooldown=0.25) == pytest.approx(0.5, abs=0.01)
    budget.start -= 1000  # past the end: the floor, never zero or negative
    assert learning_rate(1.0, 5000, warmup=100, budget=budget, cooldown=0.25) == pytest.approx(0.05)
    # Without a time budget (step-limited runs, tests) there is no cool-down.
    assert learning_rate(1.0, 5000, warmup=100, budget=TimeBudget(None), cooldown=0.25) == 1.0


def test_teacher_closes_its_batch_sources_when_it_ends(tmp_path):
    """The game workers stop when training does (a source left open at exit leaves engine processes behind)."""
    closed: list[str] = []
    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=1), tracked(source, closed))
    assert sorted(closed) == ["train", "val"]


def test_teacher_validates_on_the_same_clips_every_time(tmp_path):
    """Scores of one model must not move between validations (they moved by 4 dB with fresh clips each time)."""
    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "run", vae, max_steps=2, val_every=1, lr=0.0), source)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scores = [r["val_decoder_psnr"] for r in logged if "val_decoder_psnr" in r]
    assert len(scores) == 3 and scores[0] == scores[1] == scores[2]


def test_config_help_comes_from_the_comments_beside_and_above_each_field():
    import dataclasses

    from distillation.training.cli import field_comments, parse_config

    @dataclasses.dataclass
    class Cfg:
        lr: float = 3e-4  # peak rate, falls to 5% at the end
        # two lines
        # above
        steps: int = 10
        seed: int = 0

    assert field_comments(Cfg) == {"lr": "peak rate, falls to 5% at the end", "steps": "two lines above"}
    assert parse_config(Cfg, None, ["--lr", "0.1", "--steps", "3"]) == Cfg(lr=0.1, steps=3)
    for cls in (train_teacher.TeacherTrainConfig, train_vae.VAETrainConfig):  # every knob explained in --help
        assert set(field_comments(cls)) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: it checks that a step never waits for the GPU")
def test_teacher_step_never_waits_for_the_gpu():
    """A read-back or a pageable copy per step serialised host and GPU (a 142 ms step for 54 ms of GPU work)."""
    from distillation.training.ema import EMA
    from distillation.training.replay import ReplayBuffer

    dev = torch.device("cuda")
    dit, text = teacher.build_models(dev)
    model = torch.compile(dit)  # as the trainer's --compile
    cond = teacher.ClipConditioner(dev)
    cfg = train_teacher.TeacherTrainConfig(device="cuda", batch_size=4)
    played = {
        "latents": torch.randn(8, 16, 3, 12, 16, device=dev),
        "actions": torch.rand(8, 2, 6, device=dev) * 2 - 1,
        "captions": [f"room {i}" for i in range(8)],
    }
    replay = ReplayBuffer(iter([played]), 8, dev, lambda b: b)
    replay.refill(8)
    opt = train_teacher.make_optimizer(dit, text, cfg)
    ema = EMA(dit)
    gen, cpu_gen = torch.Generator(device=dev).manual_seed(0), torch.Generator().manual_seed(0)

    def step():
        drawn = replay.sample(cfg.batch_size, cpu_gen)
        train_teacher.optimisation_step(model, text, cond, opt, drawn, cfg, gen, cpu_gen)
        ema.update(dit, 5)

    step(), step()  # compiles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
        replay.close()


def test_compiled_training_step_keeps_one_input_shape_whatever_the_captions():
    """The text length used to follow the batch's longest caption: each new length recompiled the DiT."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    dev = torch.device("cpu")
    torch.manual_seed(0)
    dit, text = teacher.build_models(dev)
    counter = CompileCounter()
    model = torch.compile(dit, backend=counter)
    cond = teacher.ClipConditioner(dev)
    cfg = train_teacher.TeacherTrainConfig(device="cpu", batch_size=2, caption_dropout=0.5, action_dropout=0.3)
    opt = train_teacher.make_optimizer(dit, text, cfg)
    gen, cpu_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for i in range(5):
        captions = ["a room" + " with a door" * (3 * i + j) for j in range(2)]
        drawn = {"latents": torch.randn(2, 16, 2, 12, 16), "actions": torch.rand(2, 1, 6), "captions": captions}
        train_teacher.optimisation_step(model, text, cond, opt, drawn, cfg, gen, cpu_gen)
    # One compile, plus one recompile when the lazily built RoPE table appears in the model's state.
    assert counter.frame_count <= 2


def test_teacher_step_with_a_non_finite_gradient_changes_nothing():
    """A NaN batch once made every weight NaN for good; the step must skip it and the next one must train."""
    torch.manual_seed(0)
    dev = torch.device("cpu")
    dit, text = teacher.build_models(dev)
    cond = teacher.ClipConditioner(dev)
    cfg = train_teacher.TeacherTrainConfig(device="cpu", batch_size=2)
    opt = train_teacher.make_optimizer(dit, text, cfg)
    gen, cpu_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    drawn = {"latents": torch.randn(2, 16, 2, 12, 16), "actions": torch.rand(2, 1, 6), "captions": ["a", "b"]}
    before = [p.detach().clone() for p in dit.parameters()]
    bad = {**drawn, "latents": drawn["latents"].clone()}
    bad["latents"][0, 0, 1, 0, 0] = float("nan")
    _, gnorm = train_teacher.optimisation_step(dit, text, cond, opt, bad, cfg, gen, cpu_gen)
    assert not torch.isfinite(gnorm)
    assert all(torch.equal(a, b) for a, b in zip(before, dit.parameters()))
    _, gnorm = train_teacher.optimisation_step(dit, text, cond, opt, drawn, cfg, gen, cpu_gen)
    assert torch.isfinite(gnorm)
    assert all(torch.isfinite(p).all() for p in dit.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, dit.parameters()))


def test_the_non_finite_skip_refuses_an_optimizer_that_is_not_fused():
    from distillation.training.optim import clipped_step, fused_adamw

    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="needs a fused optimizer"):
        clipped_step(torch.optim.AdamW([p]), 1.0)
    # Loading a state saved by a non-fused AdamW (an older checkpoint.pt) turns a fused one back.
    old = torch.optim.AdamW([p])
    old.step()
    resumed = fused_adamw([p], 1e-3)
    resumed.load_state_dict(old.state_dict())
    with pytest.raises(ValueError, match="--init-from"):
        clipped_step(resumed, 1.0)
