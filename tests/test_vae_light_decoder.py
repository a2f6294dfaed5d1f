"""Light decoder: streaming == whole clip, frame rules, explicit state; distillation training and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_vae import max_diff, random_latents, random_vae, random_video, single_thread  # noqa: F401 (autouse)

from distillation.train_light_decoder import (
    TrainConfig,
    loss_terms,
    main,
    make_optimizer,
    teacher_targets,
    train_light_decoder,
    train_step,
)
from distillation.training.checkpoint import load_checkpoint
from distillation.training.metrics import psnr, ssim
from world_model.vae import (
    FeatureCache,
    LightDecoder,
    LightDecoderConfig,
    StreamingDecoder,
    count_parameters,
    load_light_decoder,
    widen_light_decoder,
)

TOL = 1e-5
TINY = LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=2)


def tiny_decoder(seed: int = 0) -> LightDecoder:
    torch.manual_seed(seed)
    model = LightDecoder(TINY).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_default_size_is_about_10m_parameters():
    with torch.device("meta"):
        model = LightDecoder()
    assert 9e6 < count_parameters(model) < 11e6


def test_streaming_equals_whole_clip_and_frame_rules():
    model = tiny_decoder()
    z = random_latents(2, 4)
    with torch.no_grad():
        full = model.decode(z)
        assert full.shape == (2, 3, 13, 32, 32)
        stream = StreamingDecoder(model)
        outs = [stream(z[:, :, :1]), stream(z[:, :, 1:3]), stream(z[:, :, 3:4])]
        assert [o.shape[2] for o in outs] == [1, 8, 4]
        assert max_diff(torch.cat(outs, dim=2), full) < TOL
        assert len(stream.state.tensors) == 3 * TINY.blocks_per_stage
        assert max_diff(model.decode(z[:, :, :1]), full[:, :, :1]) < TOL

        # The one-frame memory matters: a zeroed memory changes the next frames (so the test can fail).
        _, state = model.decode_chunk(z[:, :, :1])
        zeroed = FeatureCache(tuple(torch.zeros_like(t) for t in state.tensors), state.batch, state.spatial)
        wrong, _ = model.decode_chunk(z[:, :, 1:2], zeroed)
        assert max_diff(wrong, full[:, :, 1:5]) > 1e-4


def test_state_batching_and_copy():
    model = tiny_decoder()
    za, zb = random_latents(1, 3, seed=4), random_latents(1, 3, seed=5)
    with torch.no_grad():
        full_a, full_b = model.decode(za), model.decode(zb)
        a, b = StreamingDecoder(model), StreamingDecoder(model)
        a(za[:, :, :2])
        b(zb[:, :, :2])
        snapshot = a.copy()
        batched = StreamingDecoder(model, state=FeatureCache.cat([a.state, b.state]))
        out = batched(torch.cat([za[:, :, 2:], zb[:, :, 2:]]))
        assert max_diff(out[:1], full_a[:, :, 5:]) < TOL
        assert max_diff(out[1:], full_b[:, :, 5:]) < TOL
        assert max_diff(snapshot(za[:, :, 2:]), full_a[:, :, 5:]) < TOL


def test_errors_and_save_load(tmp_path):
    model = tiny_decoder()
    with pytest.raises(ValueError, match=r"16 channels"):
        model.decode(torch.zeros(1, 8, 2, 4, 4))
    with pytest.raises(ValueError, match=r"time_upsample needs one flag per stage"):
        LightDecoderConfig(widths=(8, 8), time_upsample=(True, True))
    from world_model.vae import save_light_decoder

    save_light_decoder(model, tmp_path / "ld.pt")
    loaded = load_light_decoder(tmp_path / "ld.pt")
    z = random_latents(1, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), model.decode(z))


def test_widening_keeps_the_frames_and_lets_the_new_channels_learn():
    model = tiny_decoder()
    wide = widen_light_decoder(model, (24, 12, 10, 9))
    assert wide.config.widths == (24, 12, 10, 9) and count_parameters(wide) > count_parameters(model)
    z = random_latents(2, 3)
    with torch.no_grad():
        assert max_diff(wide.decode(z), model.decode(z)) < TOL
        stream = StreamingDecoder(wide)
        chunks = torch.cat([stream(z[:, :, :1]), stream(z[:, :, 1:])], dim=2)
        assert max_diff(chunks, model.decode(z)) < TOL
    # The old outputs read the new channels through zero weights, which get a gradient: they can grow.
    first = wide.stages[0].blocks[0].conv[0]
    assert first.weight[:16, 16:24].abs().max() == 0
    wide(z).square().mean().backward()
    assert first.weight.grad[:16, 16:24].abs().max() > 0
    with pytest.raises(ValueError, match="at least as wide"):
        widen_light_decoder(model, (8, 8, 8, 8))


# ------------------------------------------------------------------------------------------------ training


def test_one_training_step_reduces_the_loss_on_a_fixed_batch():
    vae = random_vae()
    student = LightDecoder(TINY)
    cfg = TrainConfig(lr=1e-3)
    opt = make_optimizer(student, cfg)
    video = random_video(2, 5, 16, 16)
    latents, target = teacher_targets(vae, video)
    assert target.shape == video.shape
    with torch.no_grad():
        before = loss_terms(student(latents), target, cfg)[0].item()
    reported = train_step(student, vae, opt, video, cfg)
    assert set(reported) >= {"loss", "mse", "l1", "grad_norm"}
    losses = [reported["loss"]] + [train_step(student, vae, opt, video, cfg)["loss"] for _ in range(3)]
    with torch.no_grad():
        after = loss_terms(student(latents), target, cfg)[0].item()
    assert reported["loss"] == pytest.approx(before, rel=1e-5)
    assert after < losses[1] < before


def test_real_frame_weight_adds_the_loss_against_the_real_frames_and_can_skip_the_teacher():
    vae = random_vae()
    student = LightDecoder(TINY)
    video = random_video(2, 5, 16, 16)
    latents, target = teacher_targets(vae, video)
    with torch.no_grad():
        pred = student(latents)
    distill, _ = loss_terms(pred, target, TrainConfig())
    real_only, _ = loss_terms(pred, None, TrainConfig(teacher_weight=0.0, real_weight=1.0), real=video)
    both, terms = loss_terms(pred, target, TrainConfig(real_weight=0.5), real=video)
    assert both.item() == pytest.approx(distill.item() + 0.5 * real_only.item(), rel=1e-5)
    assert set(terms) == {"mse", "l1", "real_mse", "real_l1"}
    assert real_only.item() != pytest.approx(distill.item(), rel=1e-3)  # a random VAE's frames are not the video
    with pytest.raises(ValueError, match="needs those frames"):
        loss_terms(pred, None, TrainConfig(), real=video)
    # Without the teacher's frames a step decodes nothing with the VAE and still trains.
    cfg = TrainConfig(lr=1e-3, teacher_weight=0.0, real_weight=1.0)
    opt = make_optimizer(student, cfg)
    assert teacher_targets(vae, video, decode=False)[1] is None
    losses = [train_step(student, vae, opt, video, cfg)["loss"] for _ in range(4)]
    assert losses[-1] < losses[0]


def _stream(start: int):
    step = start
    while True:
        yield random_video(1, 5, 16, 16, seed=100 + step)
        step += 1


VAL = [random_video(2, 5, 16, 16, seed=7)]


def _same_state(a, b, path=""):
    """Recursively: equal tensors / values (state dicts of models, optimizers, EMA)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_resume_continues_exactly(tmp_path):
    vae = random_vae()
    cfg = TrainConfig(steps=4, lr=1e-3, warmup=2, checkpoint_every=2, log_every=1, val_every=1, ema=0.9, progress=False)
    straight = train_light_decoder(vae, _stream, tmp_path / "a", TINY, cfg, val_videos=VAL)
    assert (straight.start_step, straight.step) == (0, 4)

    first = train_light_decoder(
        vae, _stream, tmp_path / "b", TINY, TrainConfig(**{**cfg.__dict__, "steps": 2}), val_videos=VAL
    )
    assert first.step == 2
    resumed = train_light_decoder(vae, _stream, tmp_path / "b", TINY, cfg, val_videos=VAL)
    assert (resumed.start_step, resumed.step) == (2, 4)
    assert resumed.losses == straight.losses[2:]
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for part in ("student", "optimizer", "ema"):  # model, Adam moments and step counts, EMA weights
        _same_state(a[part], b[part], part)
    assert a["optimizer"]["state"], "optimizer state is saved"
    assert any(not torch.equal(a["ema"][k], a["student"][k]) for k in a["student"]), "EMA differs from the raw"
    assert straight.metrics == resumed.metrics
    assert not [p for p in (tmp_path / "b").iterdir() if "tmp" in p.name]  # atomic writes leave no temp files
    assert (tmp_path / "b" / "light_decoder.pt").exists()
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in log if "loss" in r]
    assert train_steps == [1, 2, 3, 4] and {"mse", "l1", "lr", "steps_per_s"} <= set(log[0])
    assert [r["lr"] for r in log if "loss" in r] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])  # warm-up, then flat

    # Out of time: stop after the running step with a checkpoint; a rerun picks it up.
    timed = train_light_decoder(vae, _stream, tmp_path / "c", TINY, TrainConfig(**{**cfg.__dict__, "max_minutes": 0}))
    assert timed.stopped_early and timed.step == 1
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt")["step"] == 1


def test_a_new_run_starts_from_an_exported_student(tmp_path):
    vae = random_vae()
    cfg = TrainConfig(steps=2, lr=1e-3, progress=False)
    train_light_decoder(vae, _stream, tmp_path / "a", TINY, cfg)
    export = tmp_path / "a" / "light_decoder.pt"
    zero = TrainConfig(steps=0, progress=False)  # no step: the export is the init, untouched
    train_light_decoder(vae, _stream, tmp_path / "b", TINY, zero, init_from=export)
    _same_state(
        load_light_decoder(export).state_dict(),
        load_light_decoder(tmp_path / "b" / "light_decoder.pt").state_dict(),
        "init",
    )
    # A checkpoint wins over the init (a rerun resumes), and a student of other widths is refused by name.
    before = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["student"]
    train_light_decoder(vae, _stream, tmp_path / "b", TINY, zero, init_from=tmp_path / "missing.pt")
    _same_state(before, load_light_decoder(tmp_path / "b" / "light_decoder.pt").state_dict(), "resume")
    other = LightDecoderConfig(widths=(8, 8, 8, 8), blocks_per_stage=2)
    with pytest.raises(ValueError, match="--widths"):
        train_light_decoder(vae, _stream, tmp_path / "c", other, zero, init_from=export)
    fewer_stages = LightDecoderConfig(widths=(16, 8, 8), time_upsample=(True, True), blocks_per_stage=2)
    with pytest.raises(ValueError, match="--widths"):
        train_light_decoder(vae, _stream, tmp_path / "c", fewer_stages, zero, init_from=export)
    # Wider widths start from the export, widened: the same frames before any step.
    wider = LightDecoderConfig(widths=(24, 12, 8, 8), blocks_per_stage=2)
    train_light_decoder(vae, _stream, tmp_path / "d", wider, zero, init_from=export)
    widened = load_light_decoder(tmp_path / "d" / "light_decoder.pt")
    z = random_latents(1, 2)
    with torch.no_grad():
        assert widened.config == wider and max_diff(widened.decode(z), load_light_decoder(export).decode(z)) < TOL


def test_validation_lands_in_result_json(tmp_path):
    vae = random_vae()
    cfg = TrainConfig(steps=3, lr=1e-3, val_every=2, progress=False)
    result = train_light_decoder(vae, _stream, tmp_path, TINY, cfg, val_videos=VAL, vae_fingerprint="ab" * 8)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(result.metrics)) and saved["vae_fingerprint"] == "ab" * 8
    assert saved["step"] == 3 and saved["exported"] in ("model", "ema") and saved["val_clips"] == 2
    # The numbers are the student's and the VAE decoder's against the real frames, recomputed independently.
    video = VAL[0]
    with torch.no_grad():
        vae_frames = vae.decode(vae.encode(video, chunked=False), chunked=False).clamp(-1, 1)
        student = load_light_decoder(tmp_path / "light_decoder.pt").eval()
        light_frames = student(vae.encode(video, chunked=False)).clamp(-1, 1)
    assert saved["vae_psnr"] == pytest.approx(psnr(vae_frames, video).mean().item(), rel=1e-4)
    assert saved["vae_ssim"] == pytest.approx(ssim(vae_frames, video).mean().item(), rel=1e-4)
    assert saved["val_psnr"] == pytest.approx(psnr(light_frames, video).mean().item(), rel=1e-4)
    assert saved["val_ssim"] == pytest.approx(ssim(light_frames, video).mean().item(), rel=1e-4)
    assert saved["gap_db"] == pytest.approx(saved["vae_psnr"] - saved["val_psnr"])
    assert saved["val_psnr"] == max(s["val_psnr"] for s in saved["scores"].values())
    val_steps = [
        r["step"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "val_psnr_ema" in r
    ]
    assert val_steps == [2, 3]


def test_cli_trains_from_a_folder_of_npz_and_mp4(tmp_path):
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    data = tmp_path / "videos"
    data.mkdir()
    np.savez(data / "a.npz", frames=rng.integers(0, 255, (7, 20, 28, 3), dtype=np.uint8))
    with imageio.get_writer(str(data / "b.mp4"), fps=8, format="ffmpeg", macro_block_size=8) as writer:
        for _ in range(6):
            writer.append_data(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--random-vae", "--vae-dim", "8", "--widths", "8,8,8,8",
            "--blocks-per-stage", "1", "--steps", "2", "--batch-size", "2", "--frames", "5", "--size", "16x16",
            "--val-batches", "1", "--no-progress"]  # fmt: skip
    result = main(args)
    assert result.step == 2 and len(result.losses) == 2
    assert load_light_decoder(out / "light_decoder.pt").config.widths == (8, 8, 8, 8)
    assert json.loads((out / "result.json").read_text())["val_clips"] == 2
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--out", str(out), "--frames", "6", "--random-vae"])


def test_cli_trains_on_the_real_frames_from_an_encoder_only_export(tmp_path):
    """--teacher-weight 0 never decodes with the VAE, so its decoder half may be left behind (GPU calls send a
    size-limited tree); with the teacher's loss on, the missing half is named."""
    from distillation.vae_export import DECODER_FILE, export_vae

    rng = np.random.default_rng(0)
    data = tmp_path / "videos"
    data.mkdir()
    np.savez(data / "a.npz", frames=rng.integers(0, 255, (9, 16, 16, 3), dtype=np.uint8))
    vae_dir = export_vae(random_vae(dim=8), ([0.0] * 16, [1.0] * 16), tmp_path / "vae", torch.float32)
    (vae_dir / DECODER_FILE).unlink()
    common = ["--data", str(data), "--vae-export", str(vae_dir), "--widths", "8,8,8,8", "--blocks-per-stage", "1",
              "--steps", "2", "--batch-size", "1", "--frames", "5", "--size", "16x16", "--val-batches", "1",
              "--no-progress"]  # fmt: skip
    result = main([*common, "--out", str(tmp_path / "real"), "--real-weight", "1", "--teacher-weight", "0"])
    assert result.step == 2 and all(np.isfinite(result.losses))
    with pytest.raises(FileNotFoundError, match=DECODER_FILE):
        main([*common, "--out", str(tmp_path / "teacher")])
