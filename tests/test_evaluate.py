"""The evaluation harness: end to end on a tiny random world and the real game, metric direction, probe, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_vae_export

from distillation.evaluation.game import game_config
from distillation.evaluation.models import (
    CausalWorldModel,
    NoiseModel,
    RealGameModel,
    ReconstructionModel,
    TeacherModel,
    model_from_spec,
    tiny_random_world,
)
from distillation.evaluation.probe import (
    InverseDynamicsProbe,
    ProbeConfig,
    ProbeTrainer,
    action_labels,
    collect_probe_data,
    mirror,
    scorable,
    step_windows,
)
from distillation.evaluation.replay import ReplayConfig, per_step, run_replay
from distillation.evaluation.stability import StabilityConfig, run_stability
from distillation.training.metrics import MAX_PSNR
from world_model.vae import LightDecoder, LightDecoderConfig, save_light_decoder
from world_model.world import to_uint8, video_to_tensor

SIZE = (48, 32)  # (W, H) of the tiny worlds; the game renders 160x120 and resizes


def test_harness_end_to_end_on_a_tiny_random_world(tmp_path, capsys):
    from distillation.evaluate import main
    from distillation.evaluation.probe import Probe

    out = tmp_path / "eval"
    report = main(
        [
            "--model", "tiny-random", "--clips", "3", "--horizon", "2", "--batch-size", "2", "--out", str(out),
            "--train-probe", "--probe-steps", "4", "--probe-data-steps", "16", "--probe-val-steps", "8",
            "--stability-steps", "6", "--videos", "2", "--no-progress", "--threads", "1",
        ]
    )  # fmt: skip
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["headline"] == report["headline"]
    for key in ("headline", "model", "game", "alignment", "replay", "controllability", "stability", "files"):
        assert key in on_disk, key
    rep = on_disk["replay"]
    assert rep["clips"] == 3 and rep["horizon"] == 2
    assert len(rep["psnr"]["per_step"]["mean"]) == 3 and len(rep["psnr"]["per_frame_mean"]) == 9
    assert set(rep["maps"]) <= {"MAP05", "MAP13", "MAP21", "MAP29"}  # held-out maps only
    assert {"recorded"} < set(rep["by_source"])  # recorded and scripted clips
    # A random world is nothing like Doom: far below the cap, but a real number.
    assert 3.0 < rep["psnr"]["mean"] < 25.0 and -0.5 < rep["ssim"]["mean"] < 0.8
    ctrl = on_disk["controllability"]
    assert set(ctrl) >= {"real", "generated", "ratio", "headline_ratio", "probe"}
    real = ctrl["real"]
    assert real["steps_scored"] + real["steps_excluded_blocked"] == 3 * 2  # blocked steps are left out, not lost
    assert real["steps_scored"] == ctrl["generated"]["steps_scored"] >= 1  # both scored on the same steps
    stab = on_disk["stability"]
    assert stab["steps_run"] == [6] and len(stab["psnr"]["per_step"]) == 6
    assert stab["gen_brightness"]["drift"] is not None
    end = stab["end"]  # the last end_window (100) steps: here all 6
    assert end["steps"] == ["0-6"] and end["brightness_ratio"] > 0 and end["contrast_ratio"] > 0
    # The shipped feature network scores the windows: 6 steps, so the first and the last 100 are the same frames.
    assert end["frechet_end"] > 0 and end["frechet_end"] == pytest.approx(end["frechet_start"])
    assert end["frechet_real_start_vs_end"] == pytest.approx(0.0, abs=1e-6)
    walked = ~np.isnan(np.load(out / "metrics.npz")["stability_probe_real_joint"])
    assert walked.any() == (end["probe_ratio"] is not None or end["probe_real"] == 0)
    forced = rep["teacher_forced_psnr"]  # on by default for a causal world
    assert len(forced["per_step"]["mean"]) == 3 and forced["mean"] == on_disk["headline"]["teacher_forced_psnr_mean"]
    files = on_disk["files"]
    names = [files[k] for k in ("psnr_plot", "ssim_plot", "probe_plot", "stability_plot", "contact_sheet")]
    for name in [*names, *files["videos"], "stability.mp4", "metrics.npz", "probe.pt"]:
        assert (out / name).stat().st_size > 0, name
    assert len(files["videos"]) == 2
    arrays = np.load(out / "metrics.npz")
    assert arrays["psnr"].shape == (3, 9) and arrays["stability_psnr"].shape == (1, 6)
    probe = Probe.load(out / "probe.pt")
    assert probe.frame_size == SIZE and probe.metrics["train_steps"] == 4
    assert '"psnr_mean"' in capsys.readouterr().out


def test_real_game_against_itself_is_capped():
    model = model_from_spec("real", size=SIZE)
    assert isinstance(model, RealGameModel)
    cfg = ReplayConfig(clips=3, horizon=3, batch_size=3, patterns=("mix", "forward_turn"), seed=1)
    result = run_replay(model, cfg, game_config(SIZE), progress=False)
    assert sorted(set(result.sources)) == ["recorded", "scripted:forward_turn", "scripted:mix"]
    assert result.psnr.shape == (3, 13)
    assert np.all(result.psnr == MAX_PSNR)
    np.testing.assert_allclose(result.ssim, 1.0, atol=1e-5)
    assert result.summary()["psnr"]["mean"] == MAX_PSNR


def test_a_one_step_misalignment_is_not_capped():
    """The same game lagging one action behind: the capped real-vs-real score above is not a tautology."""

    class LaggingGame(RealGameModel):
        def generate(self, start_frames, captions, actions, starts=None, seeds=None):
            lagged = np.concatenate([np.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)
            return super().generate(start_frames, captions, lagged, starts, seeds)

    game = game_config(SIZE)
    cfg = ReplayConfig(clips=2, horizon=2, batch_size=2, recorded_fraction=0.0, patterns=("turn_left", "turn_right"))
    result = run_replay(LaggingGame(game), cfg, game, progress=False)
    steps = per_step(result.psnr)
    assert np.all(steps[:, 0] == MAX_PSNR)  # same start frame
    assert np.all(steps[:, 1] < 40.0)  # a turn missed: the view is elsewhere


def test_noise_against_the_game_is_low():
    model = model_from_spec("noise", size=SIZE)
    assert isinstance(model, NoiseModel)
    result = run_replay(model, ReplayConfig(clips=2, horizon=2, batch_size=2), game_config(SIZE), progress=False)
    assert np.all(result.psnr[:, 0] == MAX_PSNR)  # the start frame is given
    assert result.psnr[:, 1:].max() < 12.0 and result.ssim[:, 1:].max() < 0.2


def test_static_baseline_holds_the_start_frame_and_the_game_moves_away_from_it():
    model = model_from_spec("static", size=SIZE)
    first = np.random.default_rng(0).integers(0, 256, (2, SIZE[1], SIZE[0], 3), dtype=np.uint8)
    video = model.generate(first, ["", ""], np.zeros((2, 3, 6), np.float32))
    assert video.shape == (2, 13, SIZE[1], SIZE[0], 3) and (video == first[:, None]).all()
    # Scripted walking and turning changes the view: holding the start frame scores below capped PSNR.
    result = run_replay(model, ReplayConfig(clips=2, horizon=3, batch_size=2), game_config(SIZE), progress=False)
    assert np.all(result.psnr[:, 0] == MAX_PSNR) and result.psnr[:, 1:].mean() < 40.0


class IdentityVAE(torch.nn.Module):
    """Encode and decode as the identity: the real clip must come back exactly (scores capped)."""

    dtype = torch.float32

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device to run on

    def encode(self, video, chunked=True):
        return video

    def decode(self, z, chunked=True):
        return z


def test_reconstruction_model_sees_the_real_clip(tmp_path):
    """The VAE ceiling: the real clip itself goes through encode -> decode (not the start frame, not noise)."""
    game = game_config(SIZE)
    cfg = ReplayConfig(clips=2, horizon=2, batch_size=2, patterns=("turn_left",), seed=2)
    result = run_replay(ReconstructionModel(game, IdentityVAE()), cfg, game, progress=False)
    assert np.all(result.psnr == MAX_PSNR)

    class Darker(IdentityVAE):
        def decode(self, z, chunked=True):
            return z - 0.1

    assert run_replay(ReconstructionModel(game, Darker()), cfg, game, progress=False).psnr.max() < 30.0
    export = tiny_vae_export(tmp_path / "vae")
    light = tmp_path / "light.pt"
    save_light_decoder(LightDecoder(LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=1)), light)
    model = model_from_spec(f"vae:{export}:{light}", size=(128, 96))
    assert isinstance(model, ReconstructionModel) and model.name == "vae+light"
    assert not hasattr(model.vae, "decoder")  # the light decoder decodes: only the VAE's encoder is loaded
    full = model_from_spec(f"vae:{export}", size=(128, 96))
    assert full.name == "vae" and hasattr(full.vae, "decoder")
    with pytest.raises(ValueError, match="light decoder file"):
        model_from_spec(f"vae:{export}:{tmp_path / 'missing.pt'}")
    # A light decoder records the latents it was trained on: the same VAE passes quietly, another one warns.
    from distillation.vae_export import latent_fingerprint
    from world_model.vae import light_decoder_fingerprint

    tiny = LightDecoder(LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=1))
    save_light_decoder(tiny, light, vae_fingerprint=latent_fingerprint(export))
    assert light_decoder_fingerprint(light) == latent_fingerprint(export)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_from_spec(f"vae:{export}:{light}", size=(128, 96))
    save_light_decoder(tiny, light, vae_fingerprint="0" * 16)
    with pytest.warns(UserWarning, match="another VAE encoder"):
        model_from_spec(f"vae:{export}:{light}", size=(128, 96))
    save_light_decoder(tiny, light)  # not recorded (older files): no warning, as before
    # The no-motion baseline through a VAE: the held start frame goes through it, not the real clip.
    held = model_from_spec(f"static:{export}:{light}", size=(128, 96))
    assert held.name == "static+vae+light" and held.describe()["kind"] == "static-reconstruction"
    first = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    acts = np.zeros((2, 2, 6), np.float32)
    still = model_from_spec("static", size=(128, 96)).generate(first, ["", ""], acts)
    with torch.no_grad():
        want = to_uint8(held.decode(held.vae.encode(video_to_tensor(still, "cpu"), chunked=False)).float()).numpy()
    assert np.array_equal(held.generate(first, ["", ""], acts), want)
    ident = ReconstructionModel(game, IdentityVAE(), hold_start=True)
    assert np.all(run_replay(ident, cfg, game, progress=False).psnr[:, 0] == MAX_PSNR)  # frame 0 is the real one
    with pytest.raises(ValueError, match="static spec"):
        model_from_spec("static:")
    with pytest.raises(ValueError, match="VAE export folder"):
        model_from_spec(f"vae:{tmp_path / 'missing'}")


def test_causal_adapter_streams_and_pads():
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    actions = np.array([[[1, 0, 0, 0, 0.5, 0], [0, 1, 0, 0, -0.5, 0.2]]], np.float32)
    single = CausalWorldModel(tiny_random_world(1), "one")
    video = single.generate(frames, ["a room"], actions, seeds=[3])
    assert video.shape == (1, 9, 32, 48, 3) and video.dtype == np.uint8
    first = single.start(frames, ["a room"], [3])
    steps = [single.step(actions[:, i]) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([first, *steps], axis=1), video)
    padded = CausalWorldModel(tiny_random_world(2), "two").generate(frames, ["a room"], actions, seeds=[3])
    assert np.abs(padded.astype(int) - video.astype(int)).max() <= 1  # a padded batch row changes nothing
    with pytest.raises(ValueError, match="start_frames"):
        single.generate(frames[:, :16], ["a room"], actions)


def test_teacher_forced_prediction_starts_each_step_from_the_real_past():
    """Step j of a teacher-forced clip depends on the real frames before it, not on the model's own: two clips with
    the same start and actions but different later real frames give the same step 1 and a different step 2."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (1, 9, 32, 48, 3), dtype=np.uint8)
    other = real.copy()
    other[:, 1:5] = 255 - other[:, 1:5]  # another real step 1
    actions = np.array([[[1, 0, 0, 0, 0.5, 0], [0, 1, 0, 0, -0.5, 0.2]]], np.float32)
    model = CausalWorldModel(tiny_random_world(1), "one")
    a = model.teacher_forced(real, ["a room"], actions, seeds=[3])
    b = model.teacher_forced(other, ["a room"], actions, seeds=[3])
    assert a.shape == real.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a[:, :5], b[:, :5])  # step 1 sees only the start frame
    assert not np.array_equal(a[:, 5:], b[:, 5:])  # step 2 sees the real step 1
    free = model.generate(real[:, 0], ["a room"], actions, seeds=[3])
    np.testing.assert_array_equal(free[:, :5], a[:, :5])  # the first prediction is the free-running one
    assert not np.array_equal(free[:, 5:], a[:, 5:])


def test_teacher_adapter_chains_clips():
    from distillation.teacher import ClipConditioner
    from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
    from world_model.config import WanDiTConfig
    from world_model.dit import WanDiT
    from world_model.vae import VAEConfig, WanVAE

    def randomized(model, std):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
        return model.eval()

    torch.manual_seed(0)
    text_cfg = SmallTextEncoderConfig(out_dim=32, dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_length=16)
    text = SmallTextEncoder(text_cfg)
    dit_cfg = WanDiTConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_dim=32, text_len=16, control_dim=7)
    dit = randomized(WanDiT(dit_cfg), 0.2)
    vae = randomized(WanVAE(VAEConfig(dim=8)), 0.1)
    teacher = TeacherModel(vae, dit, text.eval(), ClipConditioner(torch.device("cpu")), steps=1, guidance=2.0)
    teacher.clip_steps = 2
    frames = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    actions = np.tile(np.array([1, 0, 0, 0, 0.5, 0], np.float32), (1, 3, 1))
    chained = teacher.generate(frames, ["a room"], actions, seeds=[4])
    assert chained.shape == (1, 13, 96, 128, 3)  # a 2-step clip, then a padded one from its last frame
    one_clip = teacher.generate(frames, ["a room"], actions[:, :2], seeds=[4])
    np.testing.assert_array_equal(chained[:, :9], one_clip)


def test_probe_labels_and_mirror():
    actions = np.array([[1, 0, 0, 1, 0.5, 0], [0, 1, 0, 0, -0.1, 0], [0, 0, 1, 0, -0.9, 0.3]], np.float32)
    keys, turn = action_labels(actions, dead_zone=0.2)
    np.testing.assert_array_equal(keys, [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(turn, [2, 1, 0])
    windows = np.arange(3 * 5 * 2 * 4 * 3, dtype=np.uint8).reshape(3, 5, 2, 4, 3)
    flipped, mkeys, mturn = mirror(windows, keys, turn)
    np.testing.assert_array_equal(mkeys, [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])  # A <-> D
    np.testing.assert_array_equal(mturn, [0, 1, 2])
    np.testing.assert_array_equal(flipped[..., 0, :], windows[..., -1, :])
    moved = np.array([0.0, 0.0, 20.0, 3.0])  # map units walked in each step
    acts = np.array([[0, 0, 0, 0, 1, 0], [1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(scorable(acts, moved), [True, True, True, False])  # W+S cancel; D blocked
    clip = np.arange(9, dtype=np.uint8)[None, :, None, None, None] * np.ones((1, 9, 2, 2, 3), np.uint8)
    win = step_windows(clip)
    assert win.shape == (1, 2, 5, 2, 2, 3)
    np.testing.assert_array_equal(win[0, 1, :, 0, 0, 0], [4, 5, 6, 7, 8])  # action 1: frames 4..8


def test_probe_loss_falls_on_a_fixed_batch_of_real_frames():
    cfg = ProbeConfig(episode_steps=12, width=16, lr=3e-3)
    data = collect_probe_data(game_config(SIZE), ("MAP01",), 24, cfg, seed=0)
    assert data.frames[0].shape == (49, 48, 64, 3)  # resized to the probe's input size
    assert 12 <= len(data) <= 24  # steps blocked by a wall are left out
    windows, keys, turn = data.batch(np.arange(len(data)), cfg.dead_zone)
    torch.manual_seed(0)
    trainer = ProbeTrainer(InverseDynamicsProbe(cfg), cfg.lr)
    losses = [trainer.step(windows, keys, turn) for _ in range(30)]
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


def test_bad_input_gives_clear_errors(capsys):
    from distillation.evaluate import main

    with pytest.raises(ValueError, match="unknown model spec"):
        model_from_spec("no-such-model")
    with pytest.raises(ValueError, match="teacher:<teacher export folder>"):
        model_from_spec("teacher:only-one-folder")
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        ReplayConfig(horizon=0)
    with pytest.raises(ValueError, match="unknown action patterns"):
        ReplayConfig(patterns=("moonwalk",))
    with pytest.raises(SystemExit):
        main(["--model", "tiny-random", "--horizon", "0"])
    assert "--horizon must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "no-such-model", "--out", "unused"])
    assert "unknown model spec" in capsys.readouterr().err
    for interval, message in (("0.7,0.2", "need 0 <= LO < HI <= 1"), ("high", "expected 'LO,HI' noise levels")):
        with pytest.raises(SystemExit):
            main(["--model", "tiny-random", "--guidance-interval", interval, "--out", "unused"])
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="causal"):
        run_stability(NoiseModel(SIZE), StabilityConfig(steps=2), game_config(SIZE), progress=False)
    with pytest.raises(ValueError, match="differ from the model"):
        run_replay(NoiseModel((64, 48)), ReplayConfig(clips=1, horizon=1), game_config(SIZE), progress=False)


def test_any_world_load_world_takes_is_a_model_under_test():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model = model_from_spec("doom-untrained")
    assert isinstance(model, CausalWorldModel) and model.causal and model.frame_size == (128, 96)
    assert model.name == "doom-untrained"


def test_stability_end_scores_see_a_frozen_world_whose_means_match():
    """A collapsed world that holds one frame at the game's mean brightness: the mean ratio is 1, the variation
    ratio says it does not move, and per-rollout ratios show a map that misses where the pooled one hides it."""
    from distillation.evaluation.stability import StabilityResult

    rng = np.random.default_rng(0)
    real = 50 + 10 * rng.standard_normal((2, 100))
    gen = np.stack([np.full(100, real[0].mean()), real[1] * 1.5])  # rollout 0 frozen, rollout 1 too bright
    res = StabilityResult(
        StabilityConfig(steps=100, rollouts=2, end_window=100),
        {"gen_brightness": gen, "real_brightness": real, "gen_contrast": gen, "real_contrast": real},
        steps_run=[100, 100], maps=["MAP05", "MAP13"], seeds=[0, 1],
    )  # fmt: skip
    res.window_features = {  # the world starts like the game and ends far from it in feature space
        "real_start": rng.standard_normal((400, 8)), "gen_start": rng.standard_normal((400, 8)),
        "real_end": rng.standard_normal((400, 8)), "gen_end": rng.standard_normal((400, 8)) + 3.0,
    }  # fmt: skip
    end = res.end_scores()
    assert end["frechet_end"] > 50 * end["frechet_start"] and end["frechet_end"] == pytest.approx(72.0, rel=0.1)
    assert end["frechet_real_start_vs_end"] < 1.0
    per = end["brightness_ratio_per_rollout"]
    assert per[0] == pytest.approx(1.0) and per[1] == pytest.approx(1.5)
    assert end["brightness_variation_ratio"] == pytest.approx((0.0 + 1.5) / 2)


def test_without_ffmpeg_the_contact_sheet_is_still_written(tmp_path, monkeypatch, capsys):
    """A machine without imageio-ffmpeg (the GPU box) gets a warning and the PNG sheet, no MP4s, no failure."""
    import distillation.evaluate as evaluate
    import distillation.evaluation.report as report

    monkeypatch.setattr(evaluate, "mp4_available", lambda: False)
    monkeypatch.setattr(report, "mp4_available", lambda: False)
    out = tmp_path / "eval"
    result = evaluate.main(
        [
            "--model", "tiny-random", "--clips", "2", "--horizon", "1", "--batch-size", "2", "--out", str(out),
            "--stability-steps", "0", "--videos", "2", "--no-progress", "--threads", "1", "--no-features",
        ]
    )  # fmt: skip
    files = result["files"]
    assert files["videos"] == [] and "imageio-ffmpeg" in files["videos_skipped"]
    assert (out / files["contact_sheet"]).stat().st_size > 0
    assert not (out / "videos").exists()
    assert "contact sheet is still written" in capsys.readouterr().err
