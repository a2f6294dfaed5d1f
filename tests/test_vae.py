"""Wan2.1 VAE: official layout, diffusers names, chunked/streaming == whole-clip, frame rules, input errors."""

from __future__ import annotations

import pytest
import torch

from world_model.vae import (
    FeatureCache,
    StreamingDecoder,
    StreamingEncoder,
    VAEConfig,
    WanVAE,
    count_parameters,
    load_wan_vae,
    to_diffusers_names,
)
from world_model.vae.diffusers_keys import official_key_to_diffusers

TOL = 1e-5


@pytest.fixture(autouse=True)
def single_thread():
    """These models are tiny: per-op thread barriers cost more than the math, and on a busy 2-core machine a
    descheduled worker thread stalls every op (measured 4x slower). Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_vae(dim: int = 8, seed: int = 0, **cfg) -> WanVAE:
    """Tiny VAE with every parameter perturbed (gammas off 1, no zero-init), so comparisons can fail."""
    torch.manual_seed(seed)
    vae = WanVAE(VAEConfig(dim=dim, **cfg)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return vae


def random_video(b: int = 2, f: int = 9, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1


def random_latents(b: int = 2, t: int = 3, h: int = 4, w: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 16, t, h, w, generator=g)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


# ----------------------------------------------------------- official layout (docs/official_models.md §10)


def _res(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    keys = {
        f"{prefix}.residual.0.gamma": (cin, 1, 1, 1),
        f"{prefix}.residual.2.weight": (cout, cin, 3, 3, 3),
        f"{prefix}.residual.2.bias": (cout,),
        f"{prefix}.residual.3.gamma": (cout, 1, 1, 1),
        f"{prefix}.residual.6.weight": (cout, cout, 3, 3, 3),
        f"{prefix}.residual.6.bias": (cout,),
    }
    if cin != cout:
        keys[f"{prefix}.shortcut.weight"] = (cout, cin, 1, 1, 1)
        keys[f"{prefix}.shortcut.bias"] = (cout,)
    return keys


def _attn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.norm.gamma": (c, 1, 1),
        f"{prefix}.to_qkv.weight": (3 * c, c, 1, 1),
        f"{prefix}.to_qkv.bias": (3 * c,),
        f"{prefix}.proj.weight": (c, c, 1, 1),
        f"{prefix}.proj.bias": (c,),
    }


def _resample(prefix: str, kind: str, c: int) -> dict[str, tuple[int, ...]]:
    out = c // 2 if kind.startswith("up") else c
    keys = {f"{prefix}.resample.1.weight": (out, c, 3, 3), f"{prefix}.resample.1.bias": (out,)}
    if kind == "down3d":
        keys.update({f"{prefix}.time_conv.weight": (c, c, 3, 1, 1), f"{prefix}.time_conv.bias": (c,)})
    if kind == "up3d":
        keys.update({f"{prefix}.time_conv.weight": (2 * c, c, 3, 1, 1), f"{prefix}.time_conv.bias": (2 * c,)})
    return keys


# Transcribed from the module order in docs/official_models.md §10.
ENCODER_LAYOUT = [("res", 96, 96), ("res", 96, 96), ("down2d", 96), ("res", 96, 192), ("res", 192, 192),
                  ("down3d", 192), ("res", 192, 384), ("res", 384, 384), ("down3d", 384), ("res", 384, 384),
                  ("res", 384, 384)]  # fmt: skip
DECODER_LAYOUT = ([("res", 384, 384)] * 3 + [("up3d", 384), ("res", 192, 384), ("res", 384, 384),
                  ("res", 384, 384), ("up3d", 384)] + [("res", 192, 192)] * 3 + [("up2d", 192)]
                  + [("res", 96, 96)] * 3)  # fmt: skip


def expected_official_shapes() -> dict[str, tuple[int, ...]]:
    exp: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.conv1.bias": (96,),
        "encoder.head.0.gamma": (384, 1, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "encoder.head.2.bias": (32,),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv1.bias": (32,),
        "conv2.weight": (16, 16, 1, 1, 1),
        "conv2.bias": (16,),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.conv1.bias": (384,),
        "decoder.head.0.gamma": (96, 1, 1, 1),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
        "decoder.head.2.bias": (3,),
    }
    for part, layout in (("encoder.downsamples", ENCODER_LAYOUT), ("decoder.upsamples", DECODER_LAYOUT)):
        for i, (kind, *dims) in enumerate(layout):
            prefix = f"{part}.{i}"
            exp.update(_res(prefix, *dims) if kind == "res" else _resample(prefix, kind, dims[0]))
    for part in ("encoder", "decoder"):
        exp.update(_res(f"{part}.middle.0", 384, 384))
        exp.update(_attn(f"{part}.middle.1", 384))
        exp.update(_res(f"{part}.middle.2", 384, 384))
    return exp


def test_full_size_meta_build_has_the_official_194_keys_and_shapes():
    with torch.device("meta"):
        vae = WanVAE()
    assert all(p.is_meta for p in vae.parameters())  # built without allocating
    got = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    expected = expected_official_shapes()
    assert len(expected) == 194
    assert set(got) == set(expected), (sorted(set(got) - set(expected)), sorted(set(expected) - set(got)))
    assert got == expected
    # docs/official_models.md §9: 127M parameters, encoder 54M, decoder 73M.
    assert abs(count_parameters(vae) - 127e6) < 0.5e6
    assert abs(count_parameters(vae.encoder) - 54e6) < 0.5e6
    assert abs(count_parameters(vae.decoder) - 73e6) < 0.5e6


def test_config_frame_rules():
    cfg = VAEConfig()
    assert (cfg.temporal_factor, cfg.spatial_factor) == (4, 8)
    for n in range(6):
        assert cfg.num_latent_frames(4 * n + 1) == n + 1
        assert cfg.num_video_frames(n + 1) == 4 * n + 1
    assert len(cfg.latent_mean) == 16 and cfg.latent_std[0] == 2.8184
    assert VAEConfig(z_dim=4).latent_std == (1.0,) * 4


# ----------------------------------------------------------------------------------------- diffusers names

# Pairs written from the diffusers rename list of docs/official_models.md §10
# (decoder: 3 resnets + 1 upsampler per up block).
DIFFUSERS_PAIRS = {
    "encoder.conv1.weight": "encoder.conv_in.weight",
    "conv1.weight": "quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
    "encoder.downsamples.0.residual.0.gamma": "encoder.down_blocks.0.norm1.gamma",
    "encoder.downsamples.3.shortcut.weight": "encoder.down_blocks.3.conv_shortcut.weight",
    "encoder.downsamples.5.time_conv.weight": "encoder.down_blocks.5.time_conv.weight",
    "encoder.downsamples.2.resample.1.bias": "encoder.down_blocks.2.resample.1.bias",
    "encoder.middle.0.residual.2.weight": "encoder.mid_block.resnets.0.conv1.weight",
    "encoder.middle.1.to_qkv.weight": "encoder.mid_block.attentions.0.to_qkv.weight",
    "decoder.middle.2.residual.6.bias": "decoder.mid_block.resnets.1.conv2.bias",
    "encoder.head.0.gamma": "encoder.norm_out.gamma",
    "decoder.head.2.weight": "decoder.conv_out.weight",
    "decoder.conv1.bias": "decoder.conv_in.bias",
    "decoder.upsamples.3.time_conv.bias": "decoder.up_blocks.0.upsamplers.0.time_conv.bias",
    "decoder.upsamples.4.residual.3.gamma": "decoder.up_blocks.1.resnets.0.norm2.gamma",
    "decoder.upsamples.4.shortcut.weight": "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
    "decoder.upsamples.7.time_conv.weight": "decoder.up_blocks.1.upsamplers.0.time_conv.weight",
    "decoder.upsamples.11.resample.1.weight": "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
    "decoder.upsamples.14.residual.6.weight": "decoder.up_blocks.3.resnets.2.conv2.weight",
}


def test_diffusers_names_full_size():
    with torch.device("meta"):
        vae = WanVAE()
    sd = vae.state_dict()
    for official, diffusers in DIFFUSERS_PAIRS.items():
        assert official_key_to_diffusers(official) == diffusers
    dsd = to_diffusers_names(sd, vae.config)
    assert len(dsd) == 194
    assert not any(".residual." in k or ".upsamples." in k or ".middle." in k for k in dsd)
    assert {k.split(".upsamplers")[0] for k in dsd if ".upsamplers." in k} == {
        f"decoder.up_blocks.{i}" for i in range(3)
    }
    # Loads back by name detection alone, shapes included (strict).
    with torch.device("meta"):
        other = WanVAE()
    other.load_state_dict(dsd, assign=True)


def test_diffusers_state_dict_loads_to_the_same_module(tmp_path):
    vae = random_vae()
    dsd = to_diffusers_names(vae.state_dict(), vae.config)
    assert "encoder.conv_in.weight" in dsd and "decoder.up_blocks.1.upsamplers.0.time_conv.weight" in dsd

    fresh = WanVAE(vae.config).eval()
    fresh.load_state_dict(dsd)
    for (k, a), (k2, b) in zip(vae.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k

    # From a file, built on meta (no allocation) and adopting the loaded tensors; config read from shapes.
    torch.save({f"vae.{k}": v for k, v in dsd.items()}, tmp_path / "diffusers_vae.pth")
    loaded = load_wan_vae(tmp_path / "diffusers_vae.pth")
    assert loaded.config.dim == 8 and not any(p.is_meta for p in loaded.parameters())
    assert not loaded.latent_mean.is_meta
    z = random_latents(1, 2)
    with torch.no_grad():
        assert torch.equal(vae.decode(z), loaded.decode(z))
        x = random_video(1, 5, 16, 16)
        assert torch.equal(vae.encode(x), fresh.encode(x))


def test_official_named_pth_file_loads_with_inferred_config(tmp_path):
    """A ``Wan2.1_VAE.pth``-style file (official names, plain dict from ``torch.save``) through ``load_wan_vae``."""
    vae = random_vae()
    sd = vae.state_dict()
    assert "encoder.conv1.weight" in sd and "decoder.upsamples.3.time_conv.weight" in sd  # official naming
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save(sd, path)
    loaded = load_wan_vae(path)
    assert loaded.config == vae.config  # dim 8 and z 16 read from the tensors (default config is dim 96)
    assert not loaded.training and not any(p.is_meta for p in loaded.parameters())
    assert list(loaded.state_dict()) == list(sd)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
    with torch.no_grad():
        x = random_video(1, 5, 16, 16)
        assert torch.equal(loaded.encode(x), vae.encode(x))
        z = random_latents(1, 2)
        assert torch.equal(loaded.decode(z), vae.decode(z))

    # A different width and z (no Wan2.1 constants: latents normalised by 0 / 1), nested under "model".
    small = random_vae(dim=4, z_dim=8)
    torch.save({"model": small.state_dict()}, tmp_path / "small.pth")
    loaded = load_wan_vae(tmp_path / "small.pth")
    assert (loaded.config.dim, loaded.config.z_dim) == (4, 8) and loaded.config == small.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), small.state_dict().values()))


# --------------------------------------------------------------------------------- frame and shape rules


@pytest.mark.parametrize("frames", [1, 5, 9, 13])
def test_frame_count_rules(frames):
    vae = random_vae()
    x = random_video(1, frames, 16, 24)
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (1, 16, 1 + (frames - 1) // 4, 2, 3)
        y = vae.decode(z)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1


# ------------------------------------------------------------------------ chunked / streaming == whole clip


def test_chunked_and_streaming_decode_equal_whole_clip_decode():
    vae = random_vae()
    z = random_latents(2, 4)
    with torch.no_grad():
        full = vae.decode(z, chunked=False)  # one causal pass over the clip, no cache
        assert full.shape == (2, 3, 13, 32, 32)
        assert max_diff(vae.decode(z), full) < TOL  # official schedule: one latent frame per chunk
        assert max_diff(vae.decode(z, latent_frames_per_chunk=3), full) < TOL

        stream = StreamingDecoder(vae)
        outs = [stream(z[:, :, :1]), stream(z[:, :, 1:2]), stream(z[:, :, 2:4])]
        assert [o.shape[2] for o in outs] == [1, 4, 8]
        assert max_diff(torch.cat(outs, dim=2), full) < TOL
        assert len(stream.state.tensors) == 32  # docs/official_models.md §11: 32 cached tensors in the decoder

        # The cache matters: continuing from a zeroed cache gives different frames (so this test can fail).
        first, state = vae.decode_chunk(z[:, :, :1])
        zeroed = FeatureCache(tuple(torch.zeros_like(t) for t in state.tensors), state.batch, state.spatial)
        wrong, _ = vae.decode_chunk(z[:, :, 1:2], zeroed)
        assert max_diff(wrong, full[:, :, 1:5]) > 1e-3


def test_chunked_and_streaming_encode_equal_whole_clip_encode():
    vae = random_vae()
    x = random_video(2, 13)
    with torch.no_grad():
        full = vae.encode(x, chunked=False)
        assert full.shape == (2, 16, 4, 4, 4)
        assert max_diff(vae.encode(x), full) < TOL
        assert max_diff(vae.encode(x, latent_frames_per_chunk=2), full) < TOL
        enc = StreamingEncoder(vae)
        parts = [enc(x[:, :, :5]), enc(x[:, :, 5:9]), enc(x[:, :, 9:13])]
        assert [p.shape[2] for p in parts] == [2, 1, 1]
        assert max_diff(torch.cat(parts, dim=2), full) < TOL
        assert len(enc.state.tensors) == 24  # encoder: conv1 + 16 residual convs + 2 time convs + 4 mid + head

        first, state = vae.encode_chunk(x[:, :, :1])
        zeroed = FeatureCache(tuple(torch.zeros_like(t) for t in state.tensors), state.batch, state.spatial)
        wrong, _ = vae.encode_chunk(x[:, :, 1:5], zeroed)
        assert max_diff(wrong, full[:, :, 1:2]) > 1e-3


def test_first_latent_frame_stays_out_of_the_temporal_upsampler_history():
    """Official semantics: after latent frame 0 the up3d time-conv cache is "Rep", i.e. zero padding."""
    vae = random_vae()
    z = random_latents(1, 2)
    with torch.no_grad():
        _, s1 = vae.decode_chunk(z[:, :, :1])
        _, s2 = vae.decode_chunk(z[:, :, 1:2], s1)
    offset, checked = 0, 0
    for stage in vae.decoder.stages():
        if getattr(stage, "mode", None) == "upsample3d":
            assert not s1.tensors[offset].any()
            assert s2.tensors[offset].abs().sum() > 0
            checked += 1
        offset += stage.n_cache
    assert checked == 2 and offset == len(s1.tensors)


def test_stream_state_reset_copy_and_batch():
    vae = random_vae()
    za, zb = random_latents(1, 3, seed=2), random_latents(1, 3, seed=3)
    with torch.no_grad():
        full_a, full_b = vae.decode(za, chunked=False), vae.decode(zb, chunked=False)

        a = StreamingDecoder(vae)
        a(za[:, :, :1])
        branch = a.copy()  # independent: feeding the branch leaves `a` untouched
        branch(zb[:, :, 1:2])
        assert max_diff(a(za[:, :, 1:2]), full_a[:, :, 1:5]) < TOL

        b = StreamingDecoder(vae)
        b(zb[:, :, :1])
        b(zb[:, :, 1:2])
        batched = StreamingDecoder(vae, state=FeatureCache.cat([a.state, b.state]))
        out = batched(torch.cat([za[:, :, 2:3], zb[:, :, 2:3]]))
        assert max_diff(out[:1], full_a[:, :, 5:9]) < TOL
        assert max_diff(out[1:], full_b[:, :, 5:9]) < TOL
        assert batched.state.batch == 2 and batched.state.select(1).batch == 1

        a.reset()
        assert not a.state.started
        assert max_diff(a(za[:, :, :1]), full_a[:, :, :1]) < TOL

    with pytest.raises(ValueError, match="fresh stream with a started one"):
        FeatureCache.cat([FeatureCache(), b.state])


def test_decode_step_compiles_without_graph_breaks():
    """The continuing-chunk step (cache in, cache out) traces as one graph: no Python-side cache mutation."""
    vae = random_vae()
    z = random_latents(1, 2)
    step = torch.compile(vae.decode_tensors, backend="eager", fullgraph=True)
    with torch.no_grad():
        full = vae.decode(z, chunked=False)
        first, cache = vae.decode_tensors(z[:, :, :1], None)
        second, new_cache = step(z[:, :, 1:2], cache)
    assert max_diff(torch.cat([first, second], dim=2), full) < TOL
    assert len(new_cache) == 32


# --------------------------------------------------------------------------------- dtypes, memory format


def test_bf16_and_channels_last_3d():
    vae = random_vae()
    x = random_video(1, 5, 16, 16)
    with torch.no_grad():
        z32 = vae.encode(x)
        y32 = vae.decode(z32)

        cl = random_vae().to_channels_last()
        assert cl.decoder.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
        xc = x.contiguous(memory_format=torch.channels_last_3d)
        assert max_diff(cl.encode(xc), z32) < TOL
        assert max_diff(cl.decode(z32.contiguous(memory_format=torch.channels_last_3d)), y32) < TOL

        bf = random_vae().to(torch.bfloat16)
        zb = bf.encode(x)  # fp32 input is cast to the model dtype
        yb = bf.decode(z32)
        assert zb.dtype == yb.dtype == torch.bfloat16
        assert bf.latent_std.dtype == torch.float32  # normalisation constants are not rounded to bf16
        assert torch.isfinite(zb).all() and torch.isfinite(yb).all()
        # bf16 keeps ~3 significant digits; through ~30 layers of random weights that is a few percent.
        assert (zb.float() - z32).abs().mean() < 0.03 * z32.abs().mean()
        assert (yb.float() - y32).abs().mean() < 0.05 * y32.abs().mean()
        assert max_diff(bf.decode(z32, chunked=False), yb) < 0.05


# ---------------------------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    vae = random_vae()
    x = random_video(1, 5, 16, 16)
    with pytest.raises(ValueError, match=r"uint8.*127\.5 - 1"):
        vae.encode(((x + 1) * 127.5).to(torch.uint8))
    with pytest.raises(ValueError, match=r"outside \[-1, 1\].*\[0, 255\].*/ 127\.5 - 1"):
        vae.encode((x + 1) * 127.5)
    with pytest.raises(ValueError, match=r"10 frames.*4n\+1.*Trim to 9 frames or pad to 13"):
        vae.encode(random_video(1, 10, 16, 16))
    with pytest.raises(ValueError, match=r"30x16.*multiples of 8.*24x16"):
        vae.encode(random_video(1, 5, 30, 16))
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        vae.encode(torch.zeros(3, 5, 16, 16))
    with pytest.raises(ValueError, match=r"16 channels"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match=r"floating point"):
        vae.decode(torch.zeros(1, 16, 2, 2, 2, dtype=torch.int64))

    stream = StreamingDecoder(vae)
    stream(torch.zeros(1, 16, 1, 2, 2))
    with pytest.raises(ValueError, match=r"spatial size.*reset the state"):
        stream(torch.zeros(1, 16, 1, 4, 4))
    with pytest.raises(ValueError, match=r"batch 2 does not match"):
        stream(torch.zeros(2, 16, 1, 2, 2))

    enc = StreamingEncoder(vae)
    with pytest.raises(ValueError, match=r"first video chunk has 4 frames.*4n\+1"):
        enc(x[:, :, :4])
    enc(x[:, :, :1])
    with pytest.raises(ValueError, match=r"multiple of 4"):
        enc(x[:, :, 1:4])
