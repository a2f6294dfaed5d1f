"""Presets, building on meta and checkpoint naming: full-size shapes equal the official table of
docs/official_models.md §2, derived here from its rules independently of the model code."""

import pytest
import torch
from helpers import tiny_config

from world_model.checkpoints import (
    ExpertPair,
    ExpertSpec,
    Preset,
    SamplingDefaults,
    build_model,
    detect_naming,
    diffusers_to_official,
    get_preset,
    infer_config,
    init_weights_,
    list_presets,
    register_preset,
    unregister_preset,
)
from world_model.checkpoints.keys import NamingError, config_from_json, infer_control_dim
from world_model.checkpoints.presets import FULL_SIZE_PRESETS
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT, count_parameters
from world_model.sampling import FewStepSchedule


def official_table(d, f, layers, in_dim, control_in=None, text_dim=4096, freq=256, out=16):
    """docs/official_models.md §2, written out: every official tensor name -> shape."""
    t = {}

    def lin(name, o, i):
        t[f"{name}.weight"], t[f"{name}.bias"] = (o, i), (o,)

    t["patch_embedding.weight"], t["patch_embedding.bias"] = (d, in_dim, 1, 2, 2), (d,)
    if control_in:
        lin("patch_embedding_wancamctrl", d, control_in)
        lin("c2ws_hidden_states_layer1", d, d)
        lin("c2ws_hidden_states_layer2", d, d)
    lin("text_embedding.0", d, text_dim)
    lin("text_embedding.2", d, d)
    lin("time_embedding.0", d, freq)
    lin("time_embedding.2", d, d)
    lin("time_projection.1", 6 * d, d)
    lin("head.head", out * 4, d)
    t["head.modulation"] = (1, 2, d)
    for i in range(layers):
        b = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                lin(f"{b}{attn}.{p}", d, d)
            t[f"{b}{attn}.norm_q.weight"] = t[f"{b}{attn}.norm_k.weight"] = (d,)
        t[f"{b}norm3.weight"] = t[f"{b}norm3.bias"] = (d,)
        lin(f"{b}ffn.0", f, d)
        lin(f"{b}ffn.2", d, f)
        t[f"{b}modulation"] = (1, 6, d)
        if control_in:
            for n in ("cam_injector_layer1", "cam_injector_layer2", "cam_scale_layer", "cam_shift_layer"):
                lin(b + n, d, d)
    return t


A14B = dict(d=5120, f=13824, layers=40, in_dim=36)
FULL_SIZE = {
    # preset: (experts, table kwargs, tensors per expert, params per expert)
    "lingbot-world-base-cam": (("high", "low"), dict(A14B, control_in=1536), 1421, 18_544_332_864),
    "lingbot-world-base-act": (("high", "low"), dict(A14B, control_in=1792), 1421, 18_544_332_864 + 256 * 5120),
    "lingbot-world-fast": (("model",), dict(A14B, control_in=1536), 1421, 18_544_332_864),
    "wan2.2-i2v-a14b": (("high", "low"), dict(A14B), 1095, 14_288_901_184),
    "wan2.1-t2v-1.3b": (("model",), dict(d=1536, f=8960, layers=30, in_dim=16), 825, 1_418_996_800),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_preset_on_meta_matches_official_table(name):
    experts, kw, tensors, params = FULL_SIZE[name]
    table = official_table(**kw)
    assert len(table) == tensors and sum(torch.Size(s).numel() for s in table.values()) == params
    model = build_model(name, device="meta")
    models = [model] if len(experts) == 1 else [getattr(model, e) for e in experts]
    assert isinstance(model, ExpertPair if len(experts) == 2 else WanDiT)
    for m in models:
        assert all(p.is_meta for p in m.parameters())  # nothing allocated
        assert all(p.dtype == torch.bfloat16 for p in m.parameters())
        shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        assert shapes.keys() == table.keys()
        assert {k: v for k, v in shapes.items() if table[k] != v} == {}
        assert count_parameters(m) == params


def test_every_registered_full_size_preset_is_covered():
    # Equality both ways: a new full-size preset must get a row in FULL_SIZE (and so its table test).
    assert set(FULL_SIZE) == set(FULL_SIZE_PRESETS)
    assert set(FULL_SIZE_PRESETS) <= set(list_presets())


def test_top_level_build_model_on_meta():
    import world_model

    model = world_model.build_model("wan2.1-t2v-1.3b", device="meta")
    assert world_model.build_model is build_model
    assert isinstance(model, WanDiT) and model.cfg == get_preset("wan2.1-t2v-1.3b").config
    assert all(p.is_meta and p.dtype == torch.bfloat16 for p in model.parameters())
    assert count_parameters(model) == FULL_SIZE["wan2.1-t2v-1.3b"][3]


def test_preset_contents():
    cam = get_preset("lingbot-world-base-cam")
    assert cam.is_pair and [e.subfolder for e in cam.experts] == ["high_noise_model", "low_noise_model"]
    s = cam.sampling
    assert (s.solver, s.num_steps, s.shift, s.guidance_scale, s.boundary_t) == ("unipc", 70, 10.0, 5.0, 947.0)
    assert cam.fps == 16 and cam.num_frames == 81
    assert set(cam.sizes) == {(480, 832), (832, 480), (720, 1280), (1280, 720)}
    assert cam.text_encoder == "umt5-xxl" and cam.vae == "wan2.1" and cam.config.control_type == "cam"
    assert get_preset("lingbot-world-base-act").config.control_type == "act"
    assert len(s.sigmas()) == 71 and float(s.sigmas()[0]) == 1.0

    fast = get_preset("lingbot-world-fast")
    assert fast.causal and not fast.is_pair and fast.experts[0].subfolder == "lingbot_world_fast"
    fs = fast.sampling
    assert fs.guidance_scale == 1.0 and fs.schedule == FewStepSchedule.lingbot_fast()
    assert fs.schedule.timesteps == pytest.approx([1000.0, 978.7, 947.2, 825.4], abs=0.1)  # docs/official_models.md §8
    assert fs.stream.block_frames == 3 and fs.stream.cache.mode == "global"
    with pytest.raises(ValueError, match="few-step"):
        fs.sigmas()
    assert get_preset("wan2.1-t2v-1.3b").config.cond_dim == 0


def test_registry_adds_a_small_preset_with_one_call():
    cfg = tiny_config(7, text_dim=32)
    p = Preset(
        name="test-doom-tiny",
        experts=(ExpertSpec("model", cfg),),
        sampling=SamplingDefaults("few_step", 2, shift=5.0, schedule=FewStepSchedule((900.0, 500.0))),
        sizes=((96, 128),),
        fps=35,
        num_frames=9,
        text_encoder="small",
        dtype=torch.float32,
    )
    try:
        register_preset(p)
        assert get_preset("test-doom-tiny") is p and "test-doom-tiny" in list_presets()
        with pytest.raises(ValueError, match="already registered"):
            register_preset(p)
        model = build_model("test-doom-tiny")
        assert isinstance(model, WanDiT) and model.dtype == torch.float32 and model.device.type == "cpu"
    finally:
        unregister_preset("test-doom-tiny")
    with pytest.raises(KeyError, match="unknown preset 'test-doom-tiny'"):
        get_preset("test-doom-tiny")


def test_preset_validation():
    cfg = tiny_config(None)
    ok = dict(sampling=SamplingDefaults("euler", 4, 3.0), sizes=((64, 64),), fps=8, text_encoder="small")
    with pytest.raises(ValueError, match="boundary_t"):
        Preset("x", (ExpertSpec("high", cfg), ExpertSpec("low", cfg)), **ok)
    with pytest.raises(ValueError, match="multiple of 16"):
        Preset("x", (ExpertSpec("model", cfg),), **{**ok, "sizes": ((60, 64),)})
    with pytest.raises(ValueError, match="text_dim"):
        Preset("x", (ExpertSpec("model", cfg),), **{**ok, "text_encoder": "umt5-xxl"})


def test_build_materialises_every_parameter():
    """meta -> to_empty leaves garbage; build_model must give every tensor Wan's init."""
    cfg = tiny_config(6)
    sampling = SamplingDefaults("euler", 4, 3.0)
    p = Preset(
        "test-init", (ExpertSpec("model", cfg),), sampling, ((64, 64),), 8, text_encoder="small", dtype=torch.float32
    )
    model = build_model(p)
    for blk in model.blocks:
        assert torch.equal(blk.self_attn.norm_q.weight, torch.ones(cfg.dim))
        assert torch.equal(blk.norm3.weight, torch.ones(cfg.dim)) and torch.equal(blk.norm3.bias, torch.zeros(cfg.dim))
        assert blk.modulation.abs().max() < 10 / cfg.dim**0.5 and blk.modulation.std() > 0.05
        assert torch.equal(blk.cam_scale_layer.weight, torch.zeros(cfg.dim, cfg.dim))
    assert torch.equal(model.patch_embedding.bias, torch.zeros(cfg.dim))
    assert torch.equal(model.head.head.weight, torch.zeros_like(model.head.head.weight))
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    # init_weights_ (WanDiT.reset_parameters) alone sets every parameter: none keeps a NaN planted before it.
    with torch.no_grad():
        for t in model.parameters():
            t.fill_(float("nan"))
    init_weights_(model, seed=0)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_expert_pair_switches_at_the_boundary():
    pair = build_model("lingbot-world-base-cam", device="meta")
    assert pair.expert_for(torch.tensor([947.0])) is pair.high
    assert pair.expert_for(torch.tensor([946.9, 100.0])) is pair.low
    assert pair.state_dict().keys() >= {"high.blocks.0.modulation", "low.head.modulation"}


# -- naming -------------------------------------------------------------------------------------------------------
def test_diffusers_names_map_to_official():
    cases = {
        "condition_embedder.time_embedder.linear_1.weight": "time_embedding.0.weight",
        "condition_embedder.time_embedder.linear_2.bias": "time_embedding.2.bias",
        "condition_embedder.time_proj.weight": "time_projection.1.weight",
        "condition_embedder.text_embedder.linear_1.weight": "text_embedding.0.weight",
        "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
        "blocks.7.scale_shift_table": "blocks.7.modulation",
        "blocks.7.attn1.to_q.weight": "blocks.7.self_attn.q.weight",
        "blocks.7.attn1.to_out.0.bias": "blocks.7.self_attn.o.bias",
        "blocks.7.attn1.norm_k.weight": "blocks.7.self_attn.norm_k.weight",
        "blocks.12.attn2.to_v.weight": "blocks.12.cross_attn.v.weight",
        "blocks.12.attn2.norm_q.weight": "blocks.12.cross_attn.norm_q.weight",
        "blocks.3.norm2.weight": "blocks.3.norm3.weight",  # the trap: diffusers norm2 is the affine cross-attn norm
        "blocks.3.norm2.bias": "blocks.3.norm3.bias",
        "blocks.3.ffn.net.0.proj.weight": "blocks.3.ffn.0.weight",
        "blocks.3.ffn.net.2.bias": "blocks.3.ffn.2.bias",
        "scale_shift_table": "head.modulation",
        "proj_out.weight": "head.head.weight",
        "patch_embedding.weight": "patch_embedding.weight",
        "blocks.3.cam_scale_layer.weight": "blocks.3.cam_scale_layer.weight",
    }
    for d, o in cases.items():
        assert diffusers_to_official(d) == o, d


def test_detect_naming():
    assert detect_naming(["blocks.0.self_attn.q.weight", "head.modulation"]).naming == "official"
    info = detect_naming(["model.diffusion_model.blocks.0.attn1.to_q.weight", "model.diffusion_model.proj_out.bias"])
    assert info.naming == "diffusers" and info.prefix == "model.diffusion_model."
    with pytest.raises(NamingError, match="mixes"):
        detect_naming(["blocks.0.attn1.to_q.weight", "blocks.0.self_attn.q.weight"])
    with pytest.raises(NamingError, match="start with"):
        detect_naming(["model.diffusion_model.head.modulation", "head.head.weight"])


def test_control_type_from_tensor_shapes():
    assert infer_control_dim({"patch_embedding_wancamctrl.weight": (5120, 1536)}) == 6
    assert infer_control_dim({"patch_embedding_wancamctrl.weight": (5120, 1792)}) == 7
    assert infer_control_dim({"head.modulation": (1, 2, 5120)}) is None
    with pytest.raises(NamingError, match="1536 \\(cam\\) or 1792 \\(act\\)"):
        infer_control_dim({"patch_embedding_wancamctrl.weight": (5120, 1000)})


def test_infer_config_from_full_size_shapes():
    for name in ("lingbot-world-base-act", "wan2.1-t2v-1.3b"):
        p = get_preset(name)
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in WanDiT(p.config).state_dict().items()}
        official_json = {"dim": p.config.dim, "num_heads": p.config.num_heads, "text_len": 512, "model_type": "i2v"}
        assert infer_config(shapes, official_json) == p.config
    with pytest.raises(NamingError, match="config.json says dim=5120"):
        infer_config(shapes, {"dim": 5120})


def test_config_json_round_trip():
    cfg = WanDiTConfig(**{**tiny_config(7).__dict__, "extra": {}})
    assert config_from_json(cfg.to_official()) == cfg


def test_vae_config_resolves_lazily():
    vae = pytest.importorskip("world_model.vae")
    assert get_preset("lingbot-world-base-cam").vae_config() == vae.VAEConfig()
