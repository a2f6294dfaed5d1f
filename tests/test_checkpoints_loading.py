"""Loading checkpoints written by the tests in every official layout, saving in that layout, and the errors.

The layouts are written here with safetensors directly and with names produced by a diffusers table written out
from docs/official_models.md §4, so the loader is checked against the layouts, not against its own saver."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import clip_inputs, tiny_config, tiny_dit
from safetensors.torch import save_file

from world_model.checkpoints import (
    FAST_LAYOUT,
    CheckpointError,
    CheckpointMismatchError,
    ExpertPair,
    ExpertSpec,
    Preset,
    SamplingDefaults,
    build_model,
    inspect_checkpoint,
    load_dit,
    load_model,
    load_weights_,
    register_preset,
    save_checkpoint,
    save_model,
    unregister_preset,
)
from world_model.checkpoints.saving import parse_size, plan_shards
from world_model.dit import WanDiT

# official -> diffusers (docs/official_models.md §4), for writing diffusers-named test checkpoints.
TO_DIFFUSERS = [
    (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"^time_projection\.1\.", "condition_embedder.time_proj."),
    (r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"^blocks\.(\d+)\.modulation$", r"blocks.\1.scale_shift_table"),
    (r"^blocks\.(\d+)\.self_attn\.([qkv])\.", r"blocks.\1.attn1.to_\2."),
    (r"^blocks\.(\d+)\.self_attn\.o\.", r"blocks.\1.attn1.to_out.0."),
    (r"^blocks\.(\d+)\.self_attn\.norm_", r"blocks.\1.attn1.norm_"),
    (r"^blocks\.(\d+)\.cross_attn\.([qkv])\.", r"blocks.\1.attn2.to_\2."),
    (r"^blocks\.(\d+)\.cross_attn\.o\.", r"blocks.\1.attn2.to_out.0."),
    (r"^blocks\.(\d+)\.cross_attn\.norm_", r"blocks.\1.attn2.norm_"),
    (r"^blocks\.(\d+)\.norm3\.", r"blocks.\1.norm2."),
    (r"^blocks\.(\d+)\.ffn\.0\.", r"blocks.\1.ffn.net.0.proj."),
    (r"^blocks\.(\d+)\.ffn\.2\.", r"blocks.\1.ffn.net.2."),
    (r"^head\.modulation$", "scale_shift_table"),
    (r"^head\.head\.", "proj_out."),
]


def diffusers_name(name):
    for p, r in TO_DIFFUSERS:
        new, n = re.subn(p, r, name)
        if n:
            return new
    return name


def official_json(cfg):
    """config.json as LingBot ships it: official keys only (no control type, no text_dim)."""
    keys = ("dim", "eps", "ffn_dim", "freq_dim", "in_dim", "num_heads", "num_layers", "out_dim", "text_len")
    return {"_class_name": "WanModel", "_diffusers_version": "0.33.0", "model_type": "i2v"} | {
        k: getattr(cfg, k) for k in keys
    }


def write_layout(folder, model, shards=1, shard_fmt=None, index_name=None, rename=lambda n: n, config=True):
    """Write ``model`` as fp32 safetensors: one file, or ``shards`` files named ``shard_fmt.format(k, n)`` + index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {rename(k): v.detach().float().contiguous() for k, v in model.state_dict().items()}
    names = list(state)
    if shards == 1 and shard_fmt is None:
        save_file(state, str(folder / "model.safetensors"))
        files = [folder / "model.safetensors"]
    else:
        per = -(-len(names) // shards)
        files, weight_map = [], {}
        for k in range(shards):
            part = names[k * per : (k + 1) * per]
            fname = shard_fmt.format(k + 1, shards)
            save_file({n: state[n] for n in part}, str(folder / fname))
            weight_map.update(dict.fromkeys(part, fname))
            files.append(folder / fname)
        total = sum(t.numel() * 4 for t in state.values())
        (folder / index_name).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    if config:
        (folder / "config.json").write_text(json.dumps(official_json(model.cfg)))
    return files


EXPERT_FMT = "diffusion_pytorch_model-{:05d}-of-{:05d}.safetensors"
EXPERT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
FAST_FMT = "model-{:05d}-of-{:05d}.safetensors"


def assert_same_bf16(src, loaded):
    ref = copy.deepcopy(src).to(torch.bfloat16)
    sd, ld = ref.state_dict(), loaded.state_dict()
    assert sd.keys() == ld.keys()
    for k in sd:
        assert ld[k].dtype == torch.bfloat16 and torch.equal(sd[k], ld[k]), k
    x, y, ctx, ctrl = clip_inputs(src, batch=1, frames=2, hw=(2, 4))
    t = torch.tensor([[900.0, 300.0]])
    with torch.no_grad():
        assert torch.equal(ref(x, t, ctx, y, ctrl), loaded(x, t, ctx, y, ctrl))


@pytest.fixture
def tiny_presets():
    cam, act = tiny_config(6), tiny_config(7)
    common = dict(sizes=((64, 64),), fps=16, text_encoder="small")
    pair = lambda c: (ExpertSpec("high", c, "high_noise_model"), ExpertSpec("low", c, "low_noise_model"))
    presets = [
        Preset("test-tiny-cam", pair(cam), SamplingDefaults("unipc", 4, 10.0, 5.0, boundary_t=947.0), **common),
        Preset("test-tiny-act", pair(act), SamplingDefaults("unipc", 4, 10.0, 5.0, boundary_t=947.0), **common),
        Preset(
            "test-tiny-fast",
            (ExpertSpec("model", cam, "lingbot_world_fast"),),
            SamplingDefaults("euler", 4, 10.0),
            causal=True,
            **common,
        ),
    ]
    for p in presets:
        register_preset(p)
    yield {p.name: p for p in presets}
    for p in presets:
        unregister_preset(p.name)


# -- round trips in each layout -------------------------------------------------------------------------------------
def test_lingbot_root_with_two_sharded_experts(tmp_path, tiny_presets):
    high, low = tiny_dit(6, seed=1), tiny_dit(6, seed=2)
    write_layout(tmp_path / "high_noise_model", high, 3, EXPERT_FMT, EXPERT_INDEX)
    write_layout(tmp_path / "low_noise_model", low, 3, EXPERT_FMT, EXPERT_INDEX)
    assert len(list((tmp_path / "high_noise_model").glob("diffusion_pytorch_model-0000?-of-00003.safetensors"))) == 3
    for preset in ("test-tiny-cam", None):  # named, and recognised from the tensors
        pair = load_model(tmp_path, preset)
        assert isinstance(pair, ExpertPair) and pair.boundary_t == 947.0
        assert_same_bf16(high, pair.high)
        assert_same_bf16(low, pair.low)


def test_fast_folder_with_sixteen_model_shards(tmp_path, tiny_presets):
    src = tiny_dit(6, seed=3)
    files = write_layout(tmp_path / "lingbot_world_fast", src, 16, FAST_FMT, EXPERT_INDEX)
    assert files[-1].name == "model-00016-of-00016.safetensors"
    for path, preset in ((tmp_path, "test-tiny-fast"), (tmp_path, None), (tmp_path / "lingbot_world_fast", None)):
        model = load_model(path, preset)
        assert isinstance(model, WanDiT) and model.cfg.control_type == "cam"
        assert_same_bf16(src, model)


@pytest.mark.parametrize(
    "naming, control_dim",
    [
        ("official", None),
        ("official", 7),
        ("diffusers", None),
        ("diffusers", 6),
        ("prefixed", 6),
        ("prefixed-diffusers", 7),
    ],
)
def test_single_file_in_every_naming(tmp_path, naming, control_dim):
    src = tiny_dit(control_dim, seed=4, **({"in_dim": 16} if control_dim is None else {}))
    rename = {
        "official": lambda n: n,
        "diffusers": diffusers_name,
        "prefixed": lambda n: "model.diffusion_model." + n,
        "prefixed-diffusers": lambda n: "model.diffusion_model." + diffusers_name(n),
    }[naming]
    write_layout(tmp_path, src, rename=rename)
    info = inspect_checkpoint(tmp_path / "model.safetensors")
    assert info.naming.naming == ("diffusers" if "diffusers" in naming else "official")
    assert info.control_type == {None: None, 6: "cam", 7: "act"}[control_dim]
    assert info.config == src.cfg  # shape read from tensors + official config.json
    assert_same_bf16(src, load_model(tmp_path / "model.safetensors"))


def test_sharded_diffusers_names(tmp_path):
    src = tiny_dit(7, seed=5)
    write_layout(tmp_path, src, 4, EXPERT_FMT, EXPERT_INDEX, rename=diffusers_name)
    assert "blocks.0.norm2.weight" in json.loads((tmp_path / EXPERT_INDEX).read_text())["weight_map"]
    assert_same_bf16(src, load_model(tmp_path))


def test_other_dtype_and_existing_model(tmp_path):
    src = tiny_dit(6, seed=6)
    write_layout(tmp_path, src)
    model = load_model(tmp_path, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), model.state_dict().values()))
    target = tiny_dit(6, seed=9)  # an allocated model is overwritten in place
    report = load_weights_(target, tmp_path)
    assert report.loaded == len(src.state_dict()) and report.bytes_read == sum(
        t.numel() * 4 for t in src.state_dict().values()
    )
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), target.state_dict().values()))


# -- saving --------------------------------------------------------------------------------------------------------
def test_save_in_official_layout_and_reload(tmp_path):
    src = tiny_dit(6, seed=7)
    total = sum(t.numel() * 4 for t in src.state_dict().values())
    saved = save_checkpoint(src, tmp_path / "expert", max_shard_size=total // 3, dtype=torch.float32)
    names = sorted(p.name for p in (tmp_path / "expert").iterdir())
    n = len(saved.files)
    assert n >= 3 and names == sorted(
        [f"diffusion_pytorch_model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
        + [EXPERT_INDEX, "config.json", "SHA256SUMS"]
    )
    index = json.loads((tmp_path / "expert" / EXPERT_INDEX).read_text())
    assert index["metadata"]["total_size"] == total and index["weight_map"].keys() == src.state_dict().keys()
    state = src.state_dict()
    for f in saved.files:
        held = [k for k, v in index["weight_map"].items() if v == f.name]
        assert sum(state[k].numel() * 4 for k in held) <= total // 3 or len(held) == 1
    cfg_json = json.loads((tmp_path / "expert" / "config.json").read_text())
    assert cfg_json["_class_name"] == "WanModel" and cfg_json["dim"] == 64 and cfg_json["num_layers"] == 2
    loaded = load_model(tmp_path / "expert")
    assert loaded.cfg == src.cfg
    assert_same_bf16(src, loaded)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_save_release_layouts(tmp_path, tiny_presets):
    pair = ExpertPair(tiny_dit(6, seed=1), tiny_dit(6, seed=2), 947.0)
    save_model(pair, tmp_path / "base", "test-tiny-cam", num_shards=2)
    back = load_model(tmp_path / "base", "test-tiny-cam")
    assert_same_bf16(pair.high, back.high)
    assert_same_bf16(pair.low, back.low)

    fast = tiny_dit(6, seed=3).to(torch.bfloat16)  # a distilled bf16 student, published like LingBot Fast
    save_model(fast, tmp_path / "fast", "test-tiny-fast", num_shards=16)
    folder = tmp_path / "fast" / "lingbot_world_fast"
    assert (folder / "model-00016-of-00016.safetensors").exists() and (folder / EXPERT_INDEX).exists()
    assert_same_bf16(fast, load_model(tmp_path / "fast"))
    assert FAST_LAYOUT.shard_name(2, 16) == "model-00002-of-00016.safetensors"


def test_save_is_atomic(tmp_path, monkeypatch):
    src = tiny_dit(None, seed=1)
    save_checkpoint(src, tmp_path / "ckpt", num_shards=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(src, tmp_path / "ckpt")

    import world_model.checkpoints.saving as saving

    def failing_save(tensors, path, metadata=None):
        if "-00002-of-" in path:  # the second shard fails
            raise OSError("disk full")
        return save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(saving, "save_file", failing_save)
    other = tiny_dit(None, seed=2)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(other, tmp_path / "ckpt", num_shards=2, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(other, tmp_path / "new", num_shards=3)
    monkeypatch.undo()
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no half-written folder or temp leftovers
    assert_same_bf16(src, load_model(tmp_path / "ckpt"))  # the old checkpoint is intact
    save_checkpoint(other, tmp_path / "ckpt", overwrite=True)
    assert_same_bf16(other, load_model(tmp_path / "ckpt"))


def test_shard_planning():
    sizes = [(f"t{i}", 10) for i in range(10)] + [("big", 100)]
    expected = [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6", "t7", "t8"], ["t9"], ["big"]]
    assert plan_shards(sizes, max_shard_bytes=35) == expected
    parts = plan_shards([(f"t{i}", 7) for i in range(40)], num_shards=8)
    assert len(parts) == 8 and [n for p in parts for n in p] == [f"t{i}" for i in range(40)]
    assert parse_size("10GB") == 10**10 and parse_size("2GiB") == 2**31 and parse_size(123) == 123
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("ten gigs")


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.fixture
def sharded(tmp_path):
    src = tiny_dit(6, seed=8)
    files = write_layout(tmp_path / "high_noise_model", src, 3, EXPERT_FMT, EXPERT_INDEX)
    write_layout(tmp_path / "low_noise_model", src, 3, EXPERT_FMT, EXPERT_INDEX)
    return tmp_path, files, src


def test_missing_shard_names_the_file(sharded, tiny_presets):
    root, files, _ = sharded
    files[1].unlink()
    msg = r"1 of the 3 shards named in .*index.json are missing: .*diffusion_pytorch_model-00002-of-00003\.safetensors"
    with pytest.raises(CheckpointError, match=msg):
        load_model(root, "test-tiny-cam")


def test_missing_shard_of_a_series_without_index(tmp_path):
    files = write_layout(tmp_path, tiny_dit(6, seed=2), 3, EXPERT_FMT, EXPERT_INDEX)
    (tmp_path / EXPERT_INDEX).unlink()
    assert inspect_checkpoint(tmp_path).files.layout == "sharded"  # the complete series loads without its index
    files[1].unlink()
    msg = r"shards missing from the 00003-shard series: \['diffusion_pytorch_model-00002-of-00003\.safetensors'\]"
    with pytest.raises(CheckpointError, match=msg):
        load_dit(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_corrupt_shard_names_the_file(sharded, tiny_presets, damage):
    root, files, _ = sharded
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 100] if damage == "truncate" else b"\xff" * 16 + data[16:])
    msg = r"diffusion_pytorch_model-00003-of-00003\.safetensors: not a readable safetensors file .*truncated or corrupt"
    with pytest.raises(CheckpointError, match=msg):
        load_model(root, "test-tiny-cam")


def rewrite(folder, src, change):
    """Rewrite ``folder`` as one file holding ``change(state)``."""
    for f in folder.iterdir():
        f.unlink()
    state = {k: v.detach().float().clone() for k, v in src.state_dict().items()}
    change(state)
    save_file(state, str(folder / "model.safetensors"))


def test_wrong_shape_is_reported_with_the_preset(sharded, tiny_presets):
    root, _, src = sharded
    rewrite(root / "low_noise_model", src, lambda s: s.update({"blocks.1.ffn.0.weight": torch.zeros(129, 64)}))
    with pytest.raises(CheckpointMismatchError) as e:
        load_model(root, "test-tiny-cam")
    msg = str(e.value)
    assert "low_noise_model does not match preset 'test-tiny-cam', expert 'low'" in msg
    assert "0 missing, 0 unexpected, 1 shape-mismatched" in msg
    assert "blocks.1.ffn.0.weight: checkpoint [129, 64] in model.safetensors vs model [128, 64]" in msg
    with pytest.raises(CheckpointMismatchError, match="shape-mismatched"):
        load_model(root, "test-tiny-cam", strict=False)  # never loadable


def test_unknown_and_missing_keys(sharded, tiny_presets):
    root, _, src = sharded

    def change(s):
        s["blocks.0.lora_A.weight"] = torch.zeros(4, 64)
        for k in ("blocks.1.cross_attn.k.bias", "head.modulation"):
            del s[k]

    rewrite(root / "high_noise_model", src, change)
    with pytest.raises(CheckpointMismatchError) as e:
        load_model(root, "test-tiny-cam")
    msg = str(e.value)
    assert "high_noise_model does not match preset 'test-tiny-cam', expert 'high'" in msg
    assert "2 missing, 1 unexpected, 0 shape-mismatched" in msg
    assert "unexpected (checkpoint has, model lacks) (1): blocks.0.lora_A.weight in model.safetensors" in msg
    assert "missing (model has, checkpoint lacks) (2): blocks.1.cross_attn.k.bias, head.modulation" in msg
    pair = load_model(root, "test-tiny-cam", strict=False)  # reported, not silent
    assert torch.equal(pair.high.blocks[0].ffn[0].weight, src.blocks[0].ffn[0].weight.to(torch.bfloat16))
    assert torch.isfinite(pair.high.head.modulation).all()  # initialised, not garbage


def test_many_errors_are_listed_with_counts(tmp_path):
    # 2 blocks too many: 70 unexpected tensors, in the last two of 3 shards; each is listed with its shard file.
    write_layout(tmp_path, tiny_dit(6, seed=1, num_layers=4), 3, EXPERT_FMT, EXPERT_INDEX)
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights_(build_model_tiny(6), tmp_path)
    msg = str(e.value)
    assert "0 missing, 70 unexpected, 0 shape-mismatched" in msg
    item = r"blocks\.[23]\.\S+ in diffusion_pytorch_model-0000[23]-of-00003\.safetensors"
    assert re.search(
        rf"unexpected \(checkpoint has, model lacks\) \(70\): blocks\.2\.\S+ in \S+, ({item}, ){{3}}{item} "
        r"\.\.\. \(\+65 more\)",
        msg,
    )
    assert "read as dim=64, ffn_dim=128, num_layers=4" in msg


def build_model_tiny(control_dim, **kw):
    from world_model.checkpoints import build_dit

    return build_dit(tiny_config(control_dim, **kw), device="meta")


def test_control_type_mismatch_suggests_the_right_preset(tmp_path, tiny_presets):
    for sub in ("high_noise_model", "low_noise_model"):
        write_layout(tmp_path / sub, tiny_dit(7, seed=1), 2, EXPERT_FMT, EXPERT_INDEX)
    msg = (
        r"control type act \(patch_embedding_wancamctrl in-features 1792\), "
        r"but preset 'test-tiny-cam', expert 'high' expects cam\. Use preset 'test-tiny-act'\."
    )
    with pytest.raises(CheckpointMismatchError, match=msg):
        load_model(tmp_path, "test-tiny-cam")
    assert load_model(tmp_path).cfg.control_type == "act"  # recognised from the tensors


def test_index_pointing_at_the_wrong_shard(sharded, tiny_presets):
    root, files, _ = sharded
    index = root / "high_noise_model" / EXPERT_INDEX
    data = json.loads(index.read_text())
    right = data["weight_map"]["head.modulation"]
    data["weight_map"]["head.modulation"] = next(f.name for f in files if f.name != right)
    index.write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match="index places 1 tensors in shards that do not hold them.*head.modulation"
    ):
        load_model(root, "test-tiny-cam")


def test_failed_load_leaves_an_existing_model_untouched(tmp_path):
    src = tiny_dit(6, seed=1)
    write_layout(tmp_path, src, rename=lambda n: n)
    state = {k: v.detach().float().clone() for k, v in src.state_dict().items()}
    state["head.head.weight"] = torch.zeros(65, 64)
    save_file(state, str(tmp_path / "model.safetensors"))
    target = tiny_dit(6, seed=2)
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(CheckpointMismatchError):
        load_weights_(target, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope")
    (tmp_path / "high_noise_model").mkdir()
    with pytest.raises(CheckpointError, match="release root"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a .safetensors file"):
        inspect_checkpoint(tmp_path / "w.pt")


def test_build_then_load_on_meta_allocates_only_once(tmp_path):
    src = tiny_dit(6, seed=1)
    write_layout(tmp_path, src)
    model = build_model_tiny(6)
    assert all(p.is_meta for p in model.parameters())
    load_weights_(model, tmp_path)
    assert not any(p.is_meta for p in model.parameters())
    assert_same_bf16(src, model)


def test_build_model_unknown_preset():
    with pytest.raises(KeyError, match="registered presets"):
        build_model("lingbot-world-huge")


def test_partial_checkpoint_needs_a_config(tmp_path):
    src = tiny_dit(6, seed=1)
    state = {k: v.detach().float().clone() for k, v in src.state_dict().items() if not k.startswith("head.")}
    save_file(state, str(tmp_path / "model.safetensors"))
    info = inspect_checkpoint(tmp_path)
    assert info.config is None and info.control_type == "cam"
    with pytest.raises(CheckpointError, match="no tensor 'head.head.weight'.*Pass the config"):
        load_model(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"3 missing, 0 unexpected"):
        load_weights_(build_model_tiny(6), tmp_path)
    model = build_model_tiny(6)
    report = load_weights_(model, tmp_path, strict=False)  # e.g. some layers only
    assert sorted(report.missing) == ["head.head.bias", "head.head.weight", "head.modulation"]
    assert torch.equal(model.blocks[1].ffn[2].weight, src.blocks[1].ffn[2].weight.to(torch.bfloat16))


def test_config_json_disagreeing_with_the_tensors(tmp_path):
    src = tiny_dit(None, seed=1)
    write_layout(tmp_path, src)
    (tmp_path / "config.json").write_text(json.dumps({**official_json(src.cfg), "num_layers": 40}))
    with pytest.raises(CheckpointError, match="config.json says num_layers=40 but the tensors have num_layers=2"):
        load_model(tmp_path)
    assert_same_bf16(src, load_dit(tmp_path, src.cfg))  # an explicit config needs no config.json


def test_read_failure_mid_load_names_the_file(tmp_path, monkeypatch):
    import world_model.checkpoints.loading as loading

    src = tiny_dit(6, seed=1)
    write_layout(tmp_path, src, 2, EXPERT_FMT, EXPERT_INDEX)
    real = loading.safe_open

    class Flaky:  # the second shard's third tensor cannot be read
        def __init__(self, path, **kw):
            self.inner, self.path, self.n = real(path, **kw), path, 0

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_slice(self, name):
            return self.inner.get_slice(name)

        def get_tensor(self, name):
            self.n += 1
            if "00002-of" in self.path and self.n == 3:
                raise OSError("Input/output error")
            return self.inner.get_tensor(name)

    monkeypatch.setattr(loading, "safe_open", Flaky)
    n_first = sum(1 for v in json.loads((tmp_path / EXPERT_INDEX).read_text())["weight_map"].values() if "00001" in v)
    msg = rf"diffusion_pytorch_model-00002-of-00002\.safetensors: reading failed after {n_first + 2} of 91 tensors"
    with pytest.raises(CheckpointError, match=msg + r" \(Input/output error\).*partially loaded: discard it"):
        load_model(tmp_path)
