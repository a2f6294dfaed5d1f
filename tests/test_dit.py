"""The Wan DiT: attention modes agree, caches stay bounded, inputs are validated, full-size shapes are exact."""

import pytest
import torch
from helpers import clip_inputs, tiny_config, tiny_dit

from world_model.config import WanDiTConfig
from world_model.dit import ControlFeatures, WanDiT, count_parameters
from world_model.kv_cache import CacheConfig


def stream_chunks(model, x, t, ctx, y, ctrl, k, cache):
    pc = model.prepare_context(ctx)
    outs = []
    for s in range(0, x.shape[2], k):
        sl = slice(s, s + k)
        c = None if ctrl is None else ctrl[:, :, sl]
        outs.append(
            model(x[:, :, sl], t[:, sl], pc, y[:, :, sl], c, attention="streaming", kv_cache=cache, write_cache=True)
        )
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("control_dim", [None, 6, 7])
def test_streaming_equals_block_causal(k, control_dim):
    model = tiny_dit(control_dim)
    frames = 4 * k  # 4 chunks
    x, y, ctx, ctrl = clip_inputs(model, frames=frames)
    t = torch.rand(2, frames) * 1000
    with torch.no_grad():
        full = model(x, t, ctx, y, ctrl, attention="block_causal", block_frames=k)
        for cache_cfg in (
            CacheConfig("global", max_frames=32),
            CacheConfig("rolling", window_frames=frames, sink_frames=1),
        ):
            cache = model.new_kv_cache(cache_cfg, 2, x.shape[-2:])
            streamed = stream_chunks(model, x, t, ctx, y, ctrl, k, cache)
            assert (streamed - full).abs().max() < 1e-4
        # And the modes genuinely differ: bidirectional sees the future.
        bidir = model(x, t, ctx, y, ctrl, attention="bidirectional")
    assert (bidir - full).abs().max() > 1e-2


def test_first_block_equals_bidirectional_on_that_block():
    model = tiny_dit(7)
    x, y, ctx, ctrl = clip_inputs(model, frames=6)
    t = torch.rand(2, 6) * 1000
    with torch.no_grad():
        causal = model(x, t, ctx, y, ctrl, attention="block_causal", block_frames=3)
        alone = model(x[:, :, :3], t[:, :3], ctx, y[:, :, :3], ctrl[:, :, :3], attention="bidirectional")
    assert (causal[:, :, :3] - alone).abs().max() < 1e-4


def test_first_block_of_other_size():
    model = tiny_dit(None)
    x, y, ctx, _ = clip_inputs(model, frames=7)
    t = torch.rand(2, 7) * 1000
    with torch.no_grad():
        full = model(x, t, ctx, y, attention="block_causal", block_frames=3, first_block_frames=1)
        cache = model.new_kv_cache(CacheConfig("global", max_frames=8), 2, x.shape[-2:])
        pc = model.prepare_context(ctx)
        parts = [
            model(x[:, :, sl], t[:, sl], pc, y[:, :, sl], attention="streaming", kv_cache=cache, write_cache=True)
            for sl in (slice(0, 1), slice(1, 4), slice(4, 7))
        ]
    assert (torch.cat(parts, 2) - full).abs().max() < 1e-4


def test_rolling_cache_uses_relative_positions():
    """With one layer, cached K/V depend only on their own frame, so after eviction the streamed frame must equal a
    block-causal pass over [sinks, window, query] placed at contiguous positions."""
    model = tiny_dit(None, num_layers=1)
    x, y, ctx, _ = clip_inputs(model, frames=6)
    t = torch.rand(2, 6) * 1000
    with torch.no_grad():
        cache = model.new_kv_cache(CacheConfig("rolling", window_frames=2, sink_frames=1), 2, x.shape[-2:])
        streamed = stream_chunks(model, x, t, ctx, y, None, 1, cache)
        keep = [0, 3, 4, 5]  # sink, window of 2, query
        ref = model(x[:, :, keep], t[:, keep], ctx, y[:, :, keep], attention="block_causal", block_frames=1)
        absolute = model(x, t, ctx, y, attention="block_causal", block_frames=1)
    assert (streamed[:, :, 5] - ref[:, :, 3]).abs().max() < 1e-4
    assert (streamed[:, :, 5] - absolute[:, :, 5]).abs().max() > 1e-3  # eviction did change what frame 5 saw


def test_passes_with_gradients_recall_what_they_saw_and_share_frame_copies():
    """A pass that keeps gradients is recomputed in the backward after the window rolled on: it must get back the
    same keys and values, and the copies it keeps for that are one per frame shared by all passes, not one
    window per pass."""
    from world_model.attention import CachedAttention

    model = tiny_dit(None, num_layers=1)
    cache = model.new_kv_cache(CacheConfig("rolling", window_frames=2, sink_frames=1), 2, (2, 2))
    tpf, h, d = cache.k.shape[3:]
    g = torch.Generator().manual_seed(0)
    passes, steps = [], 6
    for _ in range(steps):
        q, k, v = (torch.randn(2, tpf, h, d, generator=g) for _ in range(3))
        att = CachedAttention(cache, 1, write=False)
        passes.append((att, (q, k, v), att(0, q, k, v)))  # grad mode: it keeps what it saw
        with torch.no_grad():  # the cache pass writes the frame; the window rolls after frame 2
            writer = CachedAttention(cache, 1, write=True)
            writer(0, *(torch.randn(2, tpf, h, d, generator=g) for _ in range(3)))
            writer.finish()
    for att, qkv, first in passes:
        assert torch.equal(att(0, *qkv), first)  # the recompute branch
    copies = {t.data_ptr() for att, _, _ in passes for frame in att._seen[0][0] for t in frame}
    seen = sum(len(att._seen[0][0]) for att, _, _ in passes)
    assert seen == 0 + 1 + 2 + 3 + 3 + 3 and len(copies) == 2 * (steps - 1)  # K and V of frames 0-4, once each


def test_rolling_cache_is_bounded_over_200_chunks():
    model = tiny_dit(7)
    x, y, ctx, ctrl = clip_inputs(model, batch=1, frames=1, hw=(2, 2))
    cfg = CacheConfig("rolling", window_frames=3, sink_frames=1)
    cache = model.new_kv_cache(cfg, 1, (2, 2))
    nbytes, ptr = cache.nbytes, cache.k.data_ptr()
    pc = model.prepare_context(ctx)
    seen_positions = set()
    with torch.no_grad():
        for _ in range(200):
            plan = cache.plan(1, write=False)
            seen_positions.update(plan.positions[0])
            seen_positions.update(cache.slot_positions()[0].tolist())
            out = model(x, torch.tensor([500.0]), pc, y, ctrl, attention="streaming", kv_cache=cache, write_cache=True)
            assert torch.isfinite(out).all()
            assert cache.nbytes == nbytes and cache.k.data_ptr() == ptr
    assert cache.frames_written == [200]
    assert max(seen_positions) <= cfg.sink_frames + cfg.window_frames  # never near the 1024-position table


def test_global_cache_refuses_to_leave_the_rope_table():
    model = tiny_dit(None, rope_max_positions=4)
    x, y, ctx, _ = clip_inputs(model, batch=1, frames=1, hw=(2, 2))
    cache = model.new_kv_cache(CacheConfig("global", max_frames=8), 1, (2, 2))
    with torch.no_grad():
        for _ in range(4):
            model(x, torch.tensor([0.0]), ctx, y, attention="streaming", kv_cache=cache, write_cache=True)
        with pytest.raises(ValueError, match="rolling"):
            model(x, torch.tensor([0.0]), ctx, y, attention="streaming", kv_cache=cache, write_cache=True)


def test_per_frame_timesteps():
    model = tiny_dit(None)
    x, y, ctx, _ = clip_inputs(model, frames=3)
    e, e0 = model.time_embed(torch.tensor([[100.0, 100.0, 700.0]]))
    assert torch.equal(e0[:, 0], e0[:, 1]) and not torch.allclose(e0[:, 0], e0[:, 2])
    with torch.no_grad():
        uniform = model(x, torch.tensor([300.0, 800.0]), ctx, y)
        broadcast = model(x, torch.tensor([[300.0] * 3, [800.0] * 3]), ctx, y)
        mixed = model(x, torch.tensor([[300.0, 300.0, 900.0], [800.0] * 3]), ctx, y)
    assert torch.equal(uniform, broadcast)
    assert not torch.allclose(mixed[0], uniform[0])


def test_prepared_control_equals_raw_control():
    model = tiny_dit(6)
    x, y, ctx, ctrl = clip_inputs(model, frames=2)
    t = torch.tensor([400.0, 600.0])
    with torch.no_grad():
        feats = model.prepare_control(ctrl)
        assert isinstance(feats, ControlFeatures)
        a = model(x, t, ctx, y, ctrl)
        b = model(x, t, model.prepare_context(ctx), y, feats)
        no_ctrl = model(x, t, ctx, y, None)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, no_ctrl)


def test_bad_inputs_raise_clear_errors():
    model = tiny_dit(7)
    x, y, ctx, ctrl = clip_inputs(model, frames=2)
    t = torch.tensor([10.0, 20.0])
    cases = [
        (dict(x=x[:, :8]), "x must be"),
        (dict(x=torch.randn(2, 16, 2, 5, 6), y=torch.randn(2, 20, 2, 5, 6), control=None), "divisible by the patch"),
        (dict(t=torch.tensor([10.0, 1001.0])), r"timesteps must be in \[0, 1000\]"),
        (dict(t=torch.tensor([-1.0, 3.0])), "timesteps must be"),
        (dict(t=torch.tensor([10.0])), "t must be a tensor"),
        (dict(t=torch.full((2, 3), 10.0)), r"t must be a tensor \[B\]=\[2\] or \[B, F\]=\[2, 2\]"),  # F' != F
        (dict(y=y[:1]), "y must be"),
        (dict(y=None), "needs y"),
        (dict(context=ctx[:1]), "context batch"),
        (dict(context=torch.randn(2, 5, 7)), "context must be"),
        (dict(control=ctrl[:, :100]), "control must be"),
        (dict(control=ctrl[:1]), "control is for batch"),
    ]
    base = dict(x=x, t=t, context=ctx, y=y, control=ctrl)
    for override, msg in cases:
        kw = {**base, **override}
        with pytest.raises(ValueError, match=msg):
            model(kw["x"], kw["t"], kw["context"], kw["y"], kw["control"])
    with pytest.raises(ValueError, match="no control layers"):
        tiny_dit(None)(x, t, ctx, y, ctrl)
    with pytest.raises(ValueError, match="kv_cache"):
        model(x, t, ctx, y, ctrl, attention="streaming")
    with pytest.raises(ValueError, match="attention must be"):
        model(x, t, ctx, y, ctrl, attention="sideways")
    cache_cfg = CacheConfig("rolling", window_frames=4, sink_frames=1)
    hw = tuple(x.shape[3:])
    for cache, what in (
        (model.new_kv_cache(cache_cfg, batch_size=3, latent_hw=hw), "rows 3"),  # batch mismatch
        (model.new_kv_cache(cache_cfg, batch_size=2, latent_hw=(hw[0] * 2, hw[1])), "grid"),  # size mismatch
    ):
        with pytest.raises(ValueError, match=f"kv_cache {what}|kv_cache rows .* with {what}"):
            model(x, t, ctx, y, ctrl, attention="streaming", kv_cache=cache)


@pytest.mark.parametrize(
    "cfg, tensors, params",
    [
        (WanDiTConfig(control_dim=6), 1421, 18_544_332_864),  # LingBot Base-Cam expert / Fast
        (WanDiTConfig(), 1095, 14_288_901_184),  # Wan2.2 I2V-A14B expert
        (WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, in_dim=16), 825, 1_418_996_800),
    ],
)
def test_full_size_counts_on_meta(cfg, tensors, params):
    with torch.device("meta"):
        model = WanDiT(cfg)
    sd = model.state_dict()
    assert len(sd) == tensors and count_parameters(model) == params
    d = cfg.dim
    assert sd["patch_embedding.weight"].shape == (d, cfg.in_dim, 1, 2, 2)
    assert sd["head.head.weight"].shape == (64, d) and sd["head.modulation"].shape == (1, 2, d)
    assert sd["blocks.0.modulation"].shape == (1, 6, d) and sd["time_projection.1.weight"].shape == (6 * d, d)
    if cfg.control_dim:
        assert sd["patch_embedding_wancamctrl.weight"].shape == (d, 1536)
        assert sd["blocks.39.cam_shift_layer.bias"].shape == (d,)


def test_act_control_width():
    assert WanDiTConfig(control_dim=7).control_in_features == 1792
    assert tiny_config(7).control_in_features == 7 * 64 * 4


@pytest.mark.parametrize("attention", ["bidirectional", "block_causal"])
def test_training_forward_traces_as_one_graph(attention):
    """torch.compile of the training forward must not split: a host read-back of the timesteps or RoPE positions
    broke it into 8 graphs (and synced the GPU) before the value checks were kept to eager mode."""
    import torch._dynamo as dynamo

    model = tiny_dit(7)
    x, y, ctx, ctrl = clip_inputs(model, frames=3)
    dynamo.reset()
    explained = dynamo.explain(model)(x, torch.tensor([300.0, 800.0]), ctx, y, ctrl, attention=attention)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1
