"""Sharpness and realism in the evaluation harness: the Fréchet distance, the gradient-energy ratio, the feature
network trained on real game frames (the shipped one included), the report's new keys, and freedoom1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from helpers import tiny_vae_export
from PIL import Image, ImageFilter

from distillation.evaluation.features import (
    CATEGORIES,
    CONFIG,
    DEFAULT_DIR,
    WEIGHTS,
    FeatureConfig,
    FeatureNet,
    FrameFeatures,
    collect_feature_data,
    depth_target,
    evaluate_on_data,
    feature_loss,
    object_labels,
)
from distillation.evaluation.frechet import frechet_distance, frechet_distance_stats, gaussian_stats
from distillation.evaluation.game import game_config, start_map
from distillation.evaluation.models import ReconstructionModel, StaticModel, decoder_reference
from distillation.evaluation.realism import RealismScores
from distillation.evaluation.replay import ReplayConfig, run_replay
from distillation.evaluation.sharpness import gradient_energy, sharpness_ratio, sharpness_summary

HELD_OUT = ("MAP05", "MAP13", "MAP21", "MAP29")


# -- frames of the real game, blurred and noised ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_frames() -> np.ndarray:
    """288 real 128x96 frames of the held-out maps (one per game step, episodes of 24 steps)."""
    cfg = FeatureConfig(maps=(), episode_steps=24)
    data = collect_feature_data(game_config((128, 96)), HELD_OUT, 288, cfg, seed=11)
    return data.frames


def blur(frames: np.ndarray, radius: float) -> np.ndarray:
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = [np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(radius))) for f in flat]
    return np.stack(out).reshape(frames.shape)


def noised(frames: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, std, frames.shape)
    return np.clip(frames.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


# -- the Fréchet distance ---------------------------------------------------------------------------------------------
def test_frechet_of_a_set_with_itself_is_zero_and_of_a_shifted_set_the_shift():
    x = np.random.default_rng(0).normal(size=(500, 12)) @ np.random.default_rng(1).normal(size=(12, 12))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.linspace(-1.0, 2.0, 12)
    # Same covariance, means apart by `shift`: d² = |shift|² exactly.
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9, abs=1e-8)
    assert frechet_distance(x, x + shift) > 1.0


def test_frechet_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # a shared rotation: the two covariances commute
    a, b = rng.uniform(0.2, 3.0, 6), rng.uniform(0.2, 3.0, 6)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    sa, sb = (q * a) @ q.T, (q * b) @ q.T
    d2 = frechet_distance_stats(gaussian_stats_of(mu_a, sa), gaussian_stats_of(mu_b, sb))
    want = float((mu_a - mu_b) @ (mu_a - mu_b) + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert d2 == pytest.approx(want, rel=1e-9)
    # Covariances that do not commute: the textbook formula with scipy's sqrtm.
    ma, mb = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sa, sb = ma @ ma.T + 0.1 * np.eye(6), mb @ mb.T + 0.1 * np.eye(6)
    textbook = float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(sa @ sb).real))
    assert frechet_distance_stats(gaussian_stats_of(mu_a, sa), gaussian_stats_of(mu_b, sb)) == pytest.approx(textbook)
    # Samples of the two Gaussians give about the closed form (sampling bias shrinks with the sample).
    xa = rng.multivariate_normal(mu_a, sa, 20000)
    xb = rng.multivariate_normal(mu_b, sb, 20000)
    assert frechet_distance(xa, xb) == pytest.approx(textbook, rel=0.05)


def gaussian_stats_of(mu, sigma):
    from distillation.evaluation.frechet import GaussianStats

    return GaussianStats(np.asarray(mu, float), np.asarray(sigma, float), 1000)


def test_frechet_is_finite_with_fewer_samples_than_dimensions():
    x = np.random.default_rng(3).normal(size=(10, 64))
    y = np.random.default_rng(4).normal(size=(10, 64)) + 0.5
    d = frechet_distance(x, y)
    assert np.isfinite(d) and d > 64 * 0.25 * 0.5  # the mean shift alone is 16
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(x[:1])


# -- sharpness --------------------------------------------------------------------------------------------------------
def test_gradient_energy_of_known_patterns():
    flat = np.full((2, 8, 10, 3), 128, np.uint8)
    np.testing.assert_array_equal(gradient_energy(flat), [0.0, 0.0])
    stripes = np.zeros((8, 10, 3), np.uint8)
    stripes[:, ::2] = 255  # columns alternate black / white: |dY/dx| = 1 everywhere, dY/dy = 0
    assert gradient_energy(stripes) == pytest.approx(0.5)


def test_sharpness_ratio_real_blurred_and_noise(real_frames):
    assert sharpness_ratio(real_frames, real_frames) == 1.0
    assert sharpness_ratio(blur(real_frames, 1.0), real_frames) < 0.7
    assert sharpness_ratio(blur(real_frames, 2.0), real_frames) < sharpness_ratio(blur(real_frames, 1.0), real_frames)
    assert sharpness_ratio(noised(real_frames, 12.0), real_frames) > 1.3
    uniform = np.random.default_rng(0).integers(0, 256, real_frames.shape, dtype=np.uint8)
    assert sharpness_ratio(uniform, real_frames) > 10.0


def test_sharpness_summary_windows():
    real = np.ones((3, 17))
    gen = np.ones((3, 17))
    gen[:, 13:17] = 0.5  # step 4 is half as sharp
    s = sharpness_summary(gen, real)
    assert s["per_step"] == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert s["first16"] == pytest.approx(14 / 16) and s["first16_clip_sem"] == 0.0
    with pytest.raises(ValueError, match="1 \\+ 4n"):
        sharpness_summary(np.ones((3, 16)), np.ones((3, 16)))


# -- the feature network ----------------------------------------------------------------------------------------------
def tiny_features(seed: int = 0) -> FrameFeatures:
    cfg = FeatureConfig(input_size=(32, 24), widths=(8, 8), embed_dim=16, maps=("MAP01", "MAP02"))
    torch.manual_seed(seed)
    return FrameFeatures(FeatureNet(cfg), cfg, {"heldout": {"note": "untrained"}})


def test_feature_labels_from_the_game():
    cfg = FeatureConfig(input_size=(64, 48), widths=(8, 16), embed_dim=32, maps=("MAP01", "MAP02"), episode_steps=8)
    data = collect_feature_data(game_config((64, 48)), ("MAP01", "MAP05"), 32, cfg, seed=0)
    assert data.frames.shape == (32, 48, 64, 3) and data.objects.shape == (32, len(CATEGORIES))
    assert data.depth.shape == (32, 6, 8) and data.depth.min() >= 0.0 and data.depth.max() <= 1.0
    assert data.depth.std() > 0.01  # rooms have depth structure
    for name, m in zip(data.maps, data.map_index):
        assert m == {"MAP01": 0, "MAP02": 1}.get(name, -1)  # MAP05 has no class: -1, ignored by the map loss
    assert set(np.unique(data.objects)) <= {0.0, 1.0}
    objs = [{"category": "Monster", "box": [0, 0, 2, 2]}, {"category": "Health", "box": [0, 0, 4, 3]}]
    lab = object_labels(objs, CATEGORIES, min_area=9, scale=1.0)
    assert lab[CATEGORIES.index("Health")] == 1.0 and lab[CATEGORIES.index("Monster")] == 0.0  # 4 px < 9 px
    assert object_labels(objs, CATEGORIES, min_area=9, scale=2.0)[CATEGORIES.index("Monster")] == 1.0
    np.testing.assert_allclose(depth_target(np.full((12, 16), 255, np.uint8), (3, 4)), 1.0, rtol=1e-6)
    # A few steps on this batch lower the loss: labels and network fit together.
    net = FeatureNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    from distillation.evaluation.features import batch_tensors

    batch = batch_tensors(data, np.arange(len(data)))
    losses = []
    for _ in range(25):
        loss, _ = feature_loss(net, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    scores = evaluate_on_data(net, data)
    assert scores["frames"] == 32 and 0.0 <= scores["objects_bitwise_accuracy"] <= 1.0


def test_feature_network_saves_as_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file

    feats = tiny_features()
    feats.net.feature_mean.fill_(0.25)
    feats.save(tmp_path / "f")
    meta = json.loads((tmp_path / "f" / CONFIG).read_text())
    assert meta["format"] == "lingbot-frame-features" and meta["config"]["embed_dim"] == 16
    weights = load_file(str(tmp_path / "f" / WEIGHTS))  # safetensors, not a pickle
    assert weights["feature_mean"].dtype == torch.float16
    again = FrameFeatures.load(tmp_path / "f")
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 24, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(again.embed(frames), feats.embed(frames), atol=2e-2)  # fp16 on disk
    assert again.embed(frames).shape == (2, 3, 16)
    assert again.embed(np.zeros((4, 96, 128, 3), np.uint8)).shape == (4, 16)  # other sizes are resized
    with pytest.raises(FileNotFoundError, match="--train"):
        FrameFeatures.load(tmp_path / "missing")


def test_feature_cli_help_and_arguments(capsys):
    from distillation.evaluation.features import build_parser, main

    text = build_parser().format_help()
    for flag in ("--train", "--out", "--budget-minutes", "--threads", "--data-steps"):
        assert flag in text
    with pytest.raises(SystemExit):
        main([])
    assert "pass --train" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shipped() -> FrameFeatures:
    return FrameFeatures.load(DEFAULT_DIR)


def test_the_shipped_feature_network_is_small_and_says_how_it_was_trained(shipped):
    assert (DEFAULT_DIR / WEIGHTS).stat().st_size < 2 * 1024 * 1024
    cfg, info = shipped.config, shipped.info
    assert set(cfg.maps).isdisjoint(HELD_OUT) and len(cfg.maps) == 28  # trained on training maps only
    assert info["training"]["frames"] >= 10000 and info["training"]["steps"] >= 500
    heldout = info["heldout"]
    assert heldout["training_maps_other_episodes"]["map_accuracy"] > 0.3  # 28 maps: chance is 0.04
    on_maps = heldout["heldout_maps"]
    assert on_maps["maps"] == list(HELD_OUT)
    assert on_maps["depth_l1"] < on_maps["depth_l1_mean_baseline"]  # depth layout transfers to unseen maps


def test_frechet_of_the_shipped_features_grows_with_blur_and_noise(shipped, real_frames):
    a, b = real_frames[:144], real_frames[144:]  # different episodes
    fa = shipped.embed(a)
    assert frechet_distance(fa, fa) == pytest.approx(0.0, abs=1e-6)
    # The same frames blurred or noised (the harness compares generated and real frames of the same clips).
    few, f_few = a[:96], fa[:96]
    blurred = [frechet_distance(f_few, shipped.embed(blur(few, r))) for r in (0.5, 1.0, 2.0)]
    noisy = [frechet_distance(f_few, shipped.embed(noised(few, s))) for s in (4.0, 8.0, 24.0)]
    assert 0.1 < blurred[0] < blurred[1] < blurred[2], blurred
    assert 0.05 < noisy[0] < noisy[1] < noisy[2], noisy
    # Against other episodes (content differs: the floor of the estimate) strong blur and noise still show.
    floor = frechet_distance(fa, shipped.embed(b))
    assert frechet_distance(fa, shipped.embed(blur(b, 2.0))) > 1.2 * floor
    assert frechet_distance(fa, shipped.embed(noised(b, 24.0))) > 1.2 * floor


# -- in the harness ---------------------------------------------------------------------------------------------------
def test_realism_scores_real_against_itself_and_a_decoder_reference():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 9, 24, 32, 3), dtype=np.uint8)
    scores = RealismScores(tiny_features())
    scores.update(real[:2], real[:2], blur(real[:2], 1.0))
    scores.update(real[2:], real[2:], blur(real[2:], 1.0))
    s = scores.summary()
    assert s["sharpness"]["vs_real"]["first16"] == 1.0 and s["sharpness"]["vs_real"]["per_step"] == [1.0] * 3
    assert s["sharpness"]["vs_vae"]["first16"] > 1.0  # sharper than the blurred reference
    assert s["sharpness"]["vae_vs_real"]["first16"] < 1.0
    fd = s["frechet"]
    assert fd["first16"] == pytest.approx(0.0, abs=1e-6) and len(fd["per_step"]) == 3 and fd["frames_first16"] == 32
    assert fd["real_split_first16"] > 0.0 and fd["vs_vae_first16"] > 0.0
    with pytest.raises(ValueError, match="every batch"):
        scores.update(real[:1], real[:1])


def test_the_real_split_covers_every_map_in_both_halves():
    from distillation.evaluation.realism import split_halves

    maps = ["MAP05", "MAP13", "MAP21", "MAP29"] * 3  # the replay's maps take turns
    half = split_halves(maps)
    np.testing.assert_array_equal(half, [0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1])
    for h in (0, 1):
        assert {m for m, k in zip(maps, half) if k == h} == set(maps)
    np.testing.assert_array_equal(split_halves(3), [0, 1, 0])


class IdentityVAE(torch.nn.Module):
    dtype = torch.float32

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode(self, video, chunked=True):
        return video

    def decode(self, z, chunked=True):
        return z


def test_decoder_reference_passes_the_real_clip_through_the_models_decoder():
    game = game_config((48, 32))
    real = np.random.default_rng(0).integers(0, 256, (1, 5, 32, 48, 3), dtype=np.uint8)
    held = ReconstructionModel(game, IdentityVAE(), hold_start=True)
    ref = decoder_reference(held)
    assert np.array_equal(ref(real, np.zeros_like(real)), real)  # the real clip, not the held start frame
    vae = ReconstructionModel(game, IdentityVAE())
    marker = np.zeros_like(real)
    assert decoder_reference(vae)(real, marker) is marker  # `vae:`: its output is the reference itself
    assert decoder_reference(StaticModel((48, 32))) is None


def test_report_has_sharpness_and_frechet(tmp_path, capsys):
    from distillation.evaluate import main

    args = ["--clips", "2", "--horizon", "4", "--batch-size", "2", "--no-progress", "--stability-steps", "0"]
    args += ["--videos", "0", "--threads", "1"]
    report = main(["--model", "real", "--out", str(tmp_path / "real"), *args])
    h = report["headline"]
    assert h["sharpness_vs_real_first16"] == 1.0 and h["sharpness_vs_vae_first16"] is None
    assert h["frechet_first16"] == pytest.approx(0.0, abs=1e-6)
    assert h["frechet_real_split_first16"] > 0.0  # clip 0 against clip 1: the noise floor is not zero
    on_disk = json.loads((tmp_path / "real" / "report.json").read_text())
    assert on_disk["headline"] == json.loads(json.dumps(h))
    realism = on_disk["realism"]
    assert len(realism["sharpness"]["vs_real"]["per_step"]) == 5 and len(realism["frechet"]["per_step"]) == 5
    assert realism["frechet"]["frames_first16"] == 32 and realism["frechet"]["feature_dim"] == shipped_dim()
    assert "sharpness" in on_disk["alignment"] and "frechet" in on_disk["alignment"]
    arrays = np.load(tmp_path / "real" / "metrics.npz")
    assert arrays["sharpness_energy_real"].shape == (2, 17) and arrays["features_generated"].shape[:2] == (2, 16)
    assert "sharpness 1.000 of real" in capsys.readouterr().out
    # Through a (tiny random) VAE: the second denominator; `vae:` is its own ceiling.
    export = tiny_vae_export(tmp_path / "vae")
    vae = main(["--model", f"vae:{export}", "--out", str(tmp_path / "vae_run"), "--no-features", *args])["headline"]
    assert vae["sharpness_vs_vae_first16"] == 1.0 and vae["frechet_first16"] is None
    assert vae["sharpness_vs_real_first16"] != 1.0
    held = main(["--model", f"static:{export}", "--out", str(tmp_path / "held"), "--no-features", *args])
    assert held["headline"]["sharpness_vs_vae_first16"] is not None


def shipped_dim() -> int:
    return json.loads((DEFAULT_DIR / CONFIG).read_text())["config"]["embed_dim"]


def test_freedoom1_runs_on_its_own_maps(tmp_path):
    from distillation.evaluate import main

    assert start_map("freedoom1") == "E1M1" and start_map("freedoom2") == "MAP01"
    assert game_config((128, 96), "freedoom1").map == "E1M1"
    report = main(
        [
            "--model", "static", "--wad", "freedoom1", "--clips", "2", "--horizon", "1", "--batch-size", "2",
            "--out", str(tmp_path / "fd1"), "--no-progress", "--stability-steps", "0", "--videos", "0",
            "--threads", "1",
        ]
    )  # fmt: skip
    assert set(report["replay"]["maps"]) <= {"E1M5", "E2M5", "E3M5", "E4M5"}  # freedoom1's held-out maps
    assert report["game"]["wad"] == "freedoom1" and report["replay"]["clips"] == 2
    assert report["headline"]["psnr_mean"] < 60.0  # the game moved away from the held start frame


def test_run_replay_without_realism_inputs_still_reports_sharpness():
    game = game_config((48, 32))
    result = run_replay(StaticModel((48, 32)), ReplayConfig(clips=2, horizon=1, batch_size=2), game, progress=False)
    assert result.realism["sharpness"]["vs_real"]["per_step"][0] == 1.0  # frame 0 is the real start frame
    assert result.realism["frechet"] == {"skipped": "no feature network"}
