"""The random release builder writes the official LingBot-World layout (docs/official_models.md §1), the project's
loaders read it back into the models with identical tensors, and the full-size env benchmark runs end to end at
the tiny shape (CPU, seconds)."""

from __future__ import annotations

import gc
import json
import weakref

import pytest
import torch
from safetensors import safe_open

transformers = pytest.importorskip("transformers")

from world_model.checkpoints import random_release as rr  # noqa: E402
from world_model.checkpoints.loading import load_model  # noqa: E402
from world_model.checkpoints.release import load_release  # noqa: E402

# Written out from docs/official_models.md §1, not taken from the module under test.
OFFICIAL_CONFIG_KEYS = {
    "_class_name",
    "_diffusers_version",
    "dim",
    "eps",
    "ffn_dim",
    "freq_dim",
    "in_dim",
    "model_type",
    "num_heads",
    "num_layers",
    "out_dim",
    "text_len",
}
FAST_FILES = sorted(
    ["config.json", "diffusion_pytorch_model.safetensors.index.json"]
    + [f"model-{k:05d}-of-00016.safetensors" for k in range(1, 17)]
)
ROOT_FILES = {
    "lingbot_world_fast",
    "Wan2.1_VAE.pth",
    "models_t5_umt5-xxl-enc-bf16.pth",
    "google",
    "random_release.json",
}
SEED = 3


@pytest.fixture(scope="module")
def tiny_fast(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_release")
    return rr.write_random_release(root, "fast", shapes="tiny", seed=SEED, device="cpu")


def test_full_size_names_and_counts_are_the_official_ones():
    dit = rr.dit_tensor_specs(rr.dit_config("lingbot-world-fast", "lingbot"))
    assert len(dit) == 1421 and sum(torch.Size(s).numel() for _, s in dit) == 18_544_332_864
    assert dict(dit)["patch_embedding_wancamctrl.weight"] == (5120, 1536)  # cam: read off by the loader
    vae = rr.vae_tensor_specs(96)
    assert len(vae) == 194 and 126e6 < sum(torch.Size(s).numel() for _, s in vae) < 128e6
    t5 = rr.umt5_tensor_specs()
    assert len(t5) == 242 and sum(torch.Size(s).numel() for _, s in t5) == 5_680_910_336
    # Every Wan name renames onto a tensor of transformers' UMT5EncoderModel (XXL, on meta) of the same shape.
    from world_model.checkpoints.text_encoders import umt5_config, wan_t5_to_hf

    with torch.device("meta"):
        hf = transformers.UMT5EncoderModel(umt5_config()).state_dict()
    renamed = wan_t5_to_hf({n: torch.empty(s, device="meta") for n, s in t5})
    assert set(renamed) == set(hf) - {"encoder.embed_tokens.weight"}
    assert all(tuple(hf[k].shape) == tuple(v.shape) for k, v in renamed.items())
    # What the GPU box's 64 GiB disk has to hold: 37.1 GB of bf16 DiT, 0.5 GB VAE, 11.4 GB umT5.
    assert abs(rr.estimate_bytes("fast", "lingbot") - (37.09e9 + 0.51e9 + 11.36e9)) < 0.05e9


def test_fast_layout_is_exactly_the_official_one(tiny_fast):
    root = tiny_fast.root
    assert {p.name for p in root.iterdir()} == ROOT_FILES
    fast = root / "lingbot_world_fast"
    assert sorted(p.name for p in fast.iterdir()) == FAST_FILES
    cfg_json = json.loads((fast / "config.json").read_text())
    assert set(cfg_json) == OFFICIAL_CONFIG_KEYS
    assert cfg_json["_class_name"] == "WanModel" and cfg_json["model_type"] == "i2v" and cfg_json["dim"] == 64

    index = json.loads((fast / "diffusion_pytorch_model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    specs = dict(rr.dit_tensor_specs(rr.dit_config("fast", "tiny")))
    assert set(weight_map) == set(specs)  # every tensor of the model, nothing else
    assert set(weight_map.values()) == set(FAST_FILES[2:])  # all 16 shards used, each one exists
    total = 0
    for shard in FAST_FILES[2:]:
        with safe_open(str(fast / shard), "pt") as f:
            names = f.keys()
            assert set(names) == {n for n, s in weight_map.items() if s == shard}
            for name in names:
                t = f.get_slice(name)
                assert tuple(t.get_shape()) == specs[name] and t.get_dtype() == "BF16"
                total += torch.Size(specs[name]).numel() * 2
    assert index["metadata"]["total_size"] == total

    vae = torch.load(root / "Wan2.1_VAE.pth", weights_only=True)
    assert list(vae) == [n for n, _ in rr.vae_tensor_specs(8)] and len(vae) == 194
    assert {t.dtype for t in vae.values()} == {torch.float32}
    t5 = torch.load(root / "models_t5_umt5-xxl-enc-bf16.pth", weights_only=True)
    assert len(t5) == 1 + 10 * 2 + 1 and {t.dtype for t in t5.values()} == {torch.bfloat16}
    tok = transformers.AutoTokenizer.from_pretrained(str(root / "google" / "umt5-xxl"))
    assert tok("the red door")["input_ids"][-1] == 1 and tok.pad_token_id == 0  # EOS appended, umT5's ids

    marker = rr.read_marker(root)
    assert marker["complete"] and marker["key"]["seed"] == SEED and marker["key"]["dtype"] == "bfloat16"
    assert set(marker["files"]) >= {f"lingbot_world_fast/{n}" for n in FAST_FILES}


def test_the_loaders_read_back_identical_tensors(tiny_fast):
    rel = load_release(
        tiny_fast.root, tiny_fast.preset, dtype=torch.bfloat16, text_encoder_kwargs=tiny_fast.text_encoder_kwargs()
    )
    assert rel.dit.cfg.control_type == "cam"
    want = dict(rr.random_dit_state("fast", "tiny", seed=SEED, dtype=torch.bfloat16))
    got = rel.dit.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    for name, t in rel.vae.state_dict().items():
        assert torch.equal(t, rr.random_tensor("vae/" + name, tuple(t.shape), seed=SEED, dtype=torch.float32))
    feats = rel.text_encoder.encode(["the camera moving forward"])[0]
    assert feats.shape == (5, 4096) and torch.isfinite(feats.float()).all()  # 4 words + EOS

    # Without a preset the loader reads the shape from the tensors and the official config.json alone.
    dit = load_model(tiny_fast.root)
    assert dit.cfg == rr.dit_config("fast", "tiny")
    assert all(torch.equal(a, want[k]) for k, a in dit.state_dict().items())


def test_fp32_pair_layout_of_the_base_presets(tmp_path):
    rel = rr.write_random_release(tmp_path, "base-cam", shapes="tiny", dtype=torch.float32, seed=1, device="cpu")
    for folder in ("high_noise_model", "low_noise_model"):
        names = sorted(p.name for p in (tmp_path / folder).iterdir())
        shards = [f"diffusion_pytorch_model-{k:05d}-of-00008.safetensors" for k in range(1, 9)]
        assert names == sorted(["config.json", "diffusion_pytorch_model.safetensors.index.json", *shards])
    pair = load_release(tmp_path, rel.preset, dtype=torch.float32, vae=False, text_encoder=False).dit
    for expert in ("high", "low"):
        want = dict(rr.random_dit_state("base-cam", "tiny", expert=expert, seed=1, dtype=torch.float32))
        assert all(torch.equal(t, want[k]) for k, t in getattr(pair, expert).state_dict().items())
    assert not torch.equal(pair.high.blocks[0].ffn[0].weight, pair.low.blocks[0].ffn[0].weight)


def test_shards_are_written_one_at_a_time(tmp_path, monkeypatch):
    """Each shard's tensors are freed before the next shard's are made: at full size the host holds one shard
    (2.3 GB), never the 37 GB model."""
    real_save = rr.save_file
    alive: list[list[weakref.ref]] = []
    calls = []

    def spy(tensors, path, metadata=None):
        gc.collect()
        assert all(r() is None for refs in alive for r in refs), "an earlier shard's tensors are still alive"
        calls.append(sum(t.numel() * t.element_size() for t in tensors.values()))
        real_save(tensors, path, metadata=metadata)
        alive.append([weakref.ref(t) for t in tensors.values()])

    monkeypatch.setattr(rr, "save_file", spy)
    rr.write_random_release(tmp_path, "fast", shapes="tiny", device="cpu")
    total = sum(torch.Size(s).numel() * 2 for _, s in rr.dit_tensor_specs(rr.dit_config("fast", "tiny")))
    assert len(calls) == 16 and sum(calls) == total and max(calls) < total / 2


def test_cached_root_is_reused_rebuilt_or_refused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    first = rr.ensure_random_release(root, "fast", shapes="tiny", device="cpu")
    shard = root / "lingbot_world_fast" / "model-00007-of-00016.safetensors"
    mtime = shard.stat().st_mtime_ns
    again = rr.ensure_random_release(root, "fast", shapes="tiny", device="cpu")
    assert not first.reused and again.reused and shard.stat().st_mtime_ns == mtime

    shard.unlink()  # a damaged cache is written again
    assert not rr.ensure_random_release(root, "fast", shapes="tiny", device="cpu").reused and shard.is_file()
    assert not rr.ensure_random_release(root, "fast", shapes="tiny", seed=5, device="cpu").reused  # other seed
    marker = json.loads((root / rr.MARKER).read_text())
    (root / rr.MARKER).write_text(json.dumps({**marker, "complete": False}))  # a build cut off
    assert not rr.ensure_random_release(root, "fast", shapes="tiny", seed=5, device="cpu").reused

    foreign = tmp_path / "download"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a real release lives here")
    with pytest.raises(rr.ReleaseBuildError, match="holds no random_release.json"):
        rr.ensure_random_release(foreign, "fast", shapes="tiny", device="cpu")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    monkeypatch.setattr(rr.shutil, "disk_usage", lambda p: type("U", (), {"free": 10**6})())
    with pytest.raises(rr.ReleaseBuildError, match="needs 49.0 GB"):  # checked before anything is written
        rr.write_random_release(tmp_path / "big", "fast", shapes="lingbot", device="cpu")
    assert not (tmp_path / "big").exists()


def test_a_build_cut_off_is_never_reused(tmp_path, monkeypatch):
    """The marker says "incomplete" from the first file to the last: a rebuild killed halfway (the GPU box's
    10-minute call limit) leaves a root that the next run writes again, not one it trusts or refuses."""
    rr.ensure_random_release(tmp_path, "fast", shapes="tiny", device="cpu")
    real_save, calls = rr.save_file, []

    def dies_at_shard_5(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(rr, "save_file", dies_at_shard_5)
    with pytest.raises(KeyboardInterrupt):
        rr.ensure_random_release(tmp_path, "fast", shapes="tiny", seed=5, device="cpu")
    monkeypatch.undo()
    assert rr.read_marker(tmp_path)["complete"] is False
    assert not rr.ensure_random_release(tmp_path, "fast", shapes="tiny", device="cpu").reused


def test_benchmark_runs_end_to_end_at_the_tiny_shape(tiny_fast, tmp_path):
    from benchmarks import env_full_size

    out = tmp_path / "wan.json"
    args = ["--tiny", "--device", "cpu", "--root", str(tiny_fast.root), "--seed", str(SEED), "--steps", "3"]
    rec = env_full_size.main([*args, "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rec))
    assert saved["benchmark"] == "env_full_size" and saved["commit"] and "torch" in saved["device"]
    cfg, res = saved["config"], saved["results"]
    assert cfg["model_shape"] == "tiny" and cfg["lingbot_size"] is False and cfg["decoder"] == "wan"
    assert cfg["world"]["resolution"] == "32x48" and cfg["world"]["decoder_is_encoder"]  # the full Wan VAE
    assert cfg["world"]["dit_config"]["dim"] == 64 and cfg["kv_cache"]["mode"] == "rolling"
    assert res["build"]["reused"] and res["build"]["root"] == str(tiny_fast.root)
    assert res["steps_timed"] == 3 == len(res["raw_step_ms"]) and not res["stopped_early"]
    assert res["first_step_frames"] == 8 and res["frames_per_step"] == 12  # Fast's first chunk regenerates frame 0
    assert 0 < res["step_ms_p50"] <= res["step_ms_p95"] <= res["step_ms_max"]
    assert res["reset_ms"] > 0 and res["first_frame_latency_ms"] > res["reset_ms"]
    assert res["video_frames_per_s"] > 0 and res["peak_gpu_mem_gib"] is None  # CPU: no GPU memory to report

    light = env_full_size.main([*args, "--decoder", "light", "--light-widths", "16,8,8,8", "--out", str(out)])
    world = light["config"]["world"]
    assert not world["decoder_is_encoder"] and world["notes"]["decoder"] == "light (random weights)"
    assert world["decoder_params"] < cfg["world"]["decoder_params"]


def test_benchmark_reports_how_far_a_run_got_when_gpu_memory_runs_out(tiny_fast, tmp_path, monkeypatch):
    """At LingBot size the GPU is nearly full: an OOM must still leave a JSON (phase, steps so far, the levers)
    and a failing exit status, not a lost 10-minute call."""
    from benchmarks import env_full_size
    from lingbot_env.world_env import LingBotWorldEnv

    real_step, calls = LingBotWorldEnv.step, []

    def step(self, action):
        calls.append(1)
        if len(calls) == 4:  # first chunk, one warm-up step, one timed step, then out of memory
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return real_step(self, action)

    monkeypatch.setattr(LingBotWorldEnv, "step", step)
    out = tmp_path / "oom.json"
    args = ["--tiny", "--device", "cpu", "--root", str(tiny_fast.root), "--seed", str(SEED), "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        env_full_size.main(args)
    res = json.loads(out.read_text())["results"]
    assert exc.value.code == 1 and res["phase"] == "timed steps" and res["steps_timed"] == 1
    assert "--vae-dtype bf16" in res["error"] and "Tried to allocate 3.00 GiB" in res["error"]
    assert res["reset_ms"] > 0 and res["step_ms_p50"] > 0 and res["stopped_early"]


def test_benchmark_help_explains_the_gpu_run(capsys):
    from benchmarks import env_full_size

    with pytest.raises(SystemExit) as exc:
        env_full_size.main(["--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0
    for flag in ("--shape", "--decoder", "--tiny", "--max-run-s", "--window", "GPU box", "wan-1.3b"):
        assert flag in text
