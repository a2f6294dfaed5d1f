"""FP8 linears (world_model.fp8): real quantization, bounded error, only the block matmuls replaced."""

import pytest
import torch
from helpers import clip_inputs, tiny_dit
from torch import nn

from world_model.fp8 import FP8, Float8Linear, quantize_linears_fp8_, quantize_rows, scaled_mm_supported
from world_model.kv_cache import CacheConfig

# Measured on CPU (torch 2.13): a random 256 -> 192 layer 0.037, the tiny DiT 0.030-0.043 (bidirectional and
# streaming). e4m3 keeps 3 mantissa bits: ~2^-4 relative rounding per element, averaged down by the sums.
LAYER_TOL = 0.05
MODEL_TOL = 0.06


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_quantize_rows_roundtrip():
    x = torch.randn(5, 64) * torch.logspace(-3, 3, 5)[:, None]  # rows of very different magnitude
    q, s = quantize_rows(x)
    assert q.dtype == FP8 and s.shape == (5, 1) and s.dtype == torch.float32
    assert q.float().abs().amax(1).eq(448).all()  # each row's largest entry maps to the top of the fp8 range
    err = rel(q.float() * s, x)
    assert 1e-3 < err < 0.05


def test_float8_linear_matches_linear():
    torch.manual_seed(0)
    lin = nn.Linear(256, 192)
    f8 = Float8Linear.from_linear(lin)
    assert f8.weight.dtype == FP8 and f8.weight_scale.shape == (192, 1)
    assert f8.bias.dtype == torch.float32 and torch.equal(f8.bias, lin.bias)
    x = torch.randn(3, 7, 256)
    with torch.no_grad():
        y, y8 = lin(x), f8(x)
    assert y8.shape == y.shape and y8.dtype == y.dtype
    err = rel(y8, y)
    assert 1e-3 < err < LAYER_TOL, err  # really quantized, and not by much


def test_float8_linear_keeps_out_dtype_and_zero_rows():
    lin = nn.Linear(32, 16).to(torch.bfloat16)
    f8 = Float8Linear.from_linear(lin)
    assert f8.out_dtype == torch.bfloat16 and f8.bias.dtype == torch.bfloat16
    x = torch.zeros(4, 32)
    x[1] = torch.randn(32)
    y = f8(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    assert torch.allclose(y[0].float(), lin.bias.float())  # a zero token gives exactly the bias


def _block_linear_names(model):
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.startswith("blocks.") and any(p in n for p in ("_attn.", "ffn."))
    ]


@pytest.mark.parametrize("control_dim", [None, 6])
def test_quantize_model_replaces_only_block_matmuls(control_dim):
    model = tiny_dit(control_dim)
    names = _block_linear_names(model)
    assert len(names) == model.cfg.num_layers * 10  # 4 self-attn + 4 cross-attn + 2 FFN per block
    assert quantize_linears_fp8_(model) == len(names)
    mods = dict(model.named_modules())
    assert all(isinstance(mods[n], Float8Linear) for n in names)
    kept = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert "time_embedding.0" in kept and "time_projection.1" in kept and "head.head" in kept
    assert "text_embedding.0" in kept
    if control_dim:
        assert "patch_embedding_wancamctrl" in kept and "blocks.0.cam_scale_layer" in kept
    assert all(m.weight.dtype == torch.float32 for n, m in model.named_modules() if n in kept)
    assert quantize_linears_fp8_(model) == 0  # idempotent: nothing left to replace


def test_include_exclude():
    model = tiny_dit(None)
    assert quantize_linears_fp8_(model, include=("blocks.*.ffn.*",), exclude=("blocks.1.*",)) == 2
    assert isinstance(model.blocks[0].ffn[0], Float8Linear) and isinstance(model.blocks[1].ffn[0], nn.Linear)
    assert isinstance(model.blocks[0].self_attn.q, nn.Linear)


@pytest.mark.parametrize("control_dim", [None, 6])
def test_tiny_dit_close_to_plain(control_dim):
    plain = tiny_dit(control_dim)
    fp8 = tiny_dit(control_dim)
    quantize_linears_fp8_(fp8)
    x, y, ctx, ctrl = clip_inputs(plain, frames=4)
    t = torch.rand(2, 4) * 1000
    with torch.no_grad():
        ref = plain(x, t, ctx, y, ctrl, attention="bidirectional")
        out = fp8(x, t, ctx, y, ctrl, attention="bidirectional")
    err = rel(out, ref)
    assert 1e-3 < err < MODEL_TOL, err

    # Streaming: two chunks of 2 frames through a KV cache, as the generator runs it.
    outs = {}
    for name, model in (("plain", plain), ("fp8", fp8)):
        cache = model.new_kv_cache(CacheConfig("global", max_frames=8), 2, x.shape[-2:])
        pc = model.prepare_context(ctx)
        with torch.no_grad():
            outs[name] = [
                model(
                    x[:, :, sl],
                    t[:, sl],
                    pc,
                    y[:, :, sl],
                    None if ctrl is None else ctrl[:, :, sl],
                    attention="streaming",
                    kv_cache=cache,
                    write_cache=True,
                )
                for sl in (slice(0, 2), slice(2, 4))
            ]
    for a, b in zip(outs["fp8"], outs["plain"]):
        err = rel(a, b)
        assert 1e-3 < err < MODEL_TOL, err


@pytest.mark.skipif(
    not torch.cuda.is_available() or not scaled_mm_supported(torch.device("cuda")),
    reason="needs CUDA with compute capability >= 8.9 (torch._scaled_mm fp8)",
)
@pytest.mark.parametrize("bias", [True, False])
def test_scaled_mm_matches_emulation(bias):
    torch.manual_seed(0)
    lin = nn.Linear(512, 384, bias=bias).cuda().to(torch.bfloat16)
    fast = Float8Linear.from_linear(lin)
    slow = Float8Linear.from_linear(lin, use_scaled_mm=False)
    assert fast._scaled_mm_ok(torch.empty(1, device="cuda"))
    x = torch.randn(2, 100, 512, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        a, b, ref = fast(x), slow(x), lin(x)
    assert a.dtype == b.dtype == torch.bfloat16
    assert rel(a, b) < 5e-3  # same fp8 operands: only accumulation order and bf16 rounding differ
    assert rel(a, ref) < LAYER_TOL
