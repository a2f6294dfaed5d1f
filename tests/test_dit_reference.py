"""The DiT against an independent re-statement of docs/official_models.md §3 in plain torch ops.

Nothing here uses the repo's block, head, norm or RoPE code: weights are read off the modules and the math is
written out again (modulation order shift/scale/gate, fp32 norms, RMSNorm over the whole width, RoPE on adjacent
pairs split 44/42/42 by frame/row/col, LingBot control injection, norm3 before cross-attention, GELU-tanh FFN,
head modulation from the pre-projection ``e``, unpatchify channel order ``((pt*2+ph)*2+pw)*16 + c``).
"""

import math

import pytest
import torch
from helpers import randomize_

from world_model.config import WanDiTConfig
from world_model.dit import WanDiT, sinusoidal_embedding
from world_model.rope import rope_axis_dims

EPS = 1e-6
# head_dim 128 so the RoPE split is the official 44 / 42 / 42 (docs/official_models.md §3).
CFG = dict(dim=256, ffn_dim=384, num_heads=2, num_layers=2, in_dim=36, out_dim=16, text_dim=32, text_len=8)


def _model(control_dim=7, seed=0) -> WanDiT:
    torch.manual_seed(seed)
    return randomize_(WanDiT(WanDiTConfig(control_dim=control_dim, **CFG)).eval(), std=0.1, seed=seed)


def lin(m, x):
    return x @ m.weight.T + m.bias


def layer_norm(x, weight=None, bias=None):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    out = (x - mu) / torch.sqrt(var + EPS)
    if weight is not None:
        out = out * weight + bias
    return out


def rms_norm(x, weight):  # over the whole model width, before the heads are split
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + EPS) * weight


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x * torch.sigmoid(x)


def ref_rope_angles(grid, head_dim=128):
    """``[F*H*W, head_dim/2]`` angles: 22 frame pairs, 21 row pairs, 21 column pairs (for head_dim 128)."""
    assert head_dim == 128
    f, h, w = grid
    pos = torch.stack(torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    cols = []
    for axis_dim, which in ((44, 0), (42, 1), (42, 2)):
        freqs = 10000.0 ** (-torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim)
        p = pos.reshape(-1, 3)[:, which].double()
        cols.append(p[:, None] * freqs[None])
    return torch.cat(cols, dim=1)


def ref_rope(x, ang):
    """``x`` ``[B, L, H, D]``: rotate adjacent channel pairs (2i, 2i+1) by ``ang`` ``[L, D/2]``."""
    c, s = ang.cos().float()[None, :, None], ang.sin().float()[None, :, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def ref_attention(q, k, v, heads):
    b, lq, d = q.shape
    q, k, v = (t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, lq, d)


def ref_injection(blk, c):
    h = lin(blk.cam_injector_layer2, silu(lin(blk.cam_injector_layer1, c))) + c
    return lin(blk.cam_scale_layer, h), lin(blk.cam_shift_layer, h)


def ref_block(blk, x, e0, text, c, grid, heads):
    """``x`` ``[B, L, d]`` (tokens frame, row, col), ``e0`` ``[B, L, 6, d]`` per token, ``text`` ``[B, T, d]``."""
    m = blk.modulation[0] + e0
    shift1, scale1, gate1, shift2, scale2, gate2 = m.unbind(2)
    ang = ref_rope_angles(grid)
    sa = blk.self_attn
    h = layer_norm(x) * (1 + scale1) + shift1
    b, seq, d = h.shape
    q = ref_rope(rms_norm(lin(sa.q, h), sa.norm_q.weight).reshape(b, seq, heads, -1), ang).reshape(b, seq, d)
    k = ref_rope(rms_norm(lin(sa.k, h), sa.norm_k.weight).reshape(b, seq, heads, -1), ang).reshape(b, seq, d)
    x = x + gate1 * lin(sa.o, ref_attention(q, k, lin(sa.v, h), heads))
    if c is not None:
        scale_c, shift_c = ref_injection(blk, c)
        x = (1 + scale_c) * x + shift_c
    ca = blk.cross_attn
    h = layer_norm(x, blk.norm3.weight, blk.norm3.bias)
    q = rms_norm(lin(ca.q, h), ca.norm_q.weight)
    k = rms_norm(lin(ca.k, text), ca.norm_k.weight)
    x = x + lin(ca.o, ref_attention(q, k, lin(ca.v, text), heads))
    h = layer_norm(x) * (1 + scale2) + shift2
    return x + gate2 * lin(blk.ffn[2], gelu_tanh(lin(blk.ffn[0], h)))


def ref_sinusoid(t, dim=256):
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    ang = t.double()[:, None] * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=1).float()


def ref_forward(model, x, t, context, y, control):
    """The whole forward of docs/official_models.md §3 (t ``[B, F]``)."""
    cfg = model.cfg
    b, _, f, hh, ww = x.shape
    gh, gw = hh // 2, ww // 2
    grid = (f, gh, gw)
    # 1. patch embedding: a 1x2x2 conv as a matmul over (c, ph, pw)
    xin = torch.cat([x, y], dim=1)
    patches = xin.reshape(b, cfg.in_dim, f, gh, 2, gw, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * gh * gw, -1)
    wpe = model.patch_embedding.weight.reshape(cfg.dim, -1)
    tok = patches @ wpe.T + model.patch_embedding.bias
    # 2. time, per frame, broadcast to tokens
    e = lin(model.time_embedding[2], silu(lin(model.time_embedding[0], ref_sinusoid(t.reshape(-1)))))
    e0 = lin(model.time_projection[1], silu(e)).reshape(b, f, 6, cfg.dim)
    e = e.reshape(b, f, cfg.dim)
    per_tok = gh * gw
    e_tok = e.repeat_interleave(per_tok, dim=1)
    e0_tok = e0.repeat_interleave(per_tok, dim=1)
    # 3. text, zero-padded to text_len, not masked
    ctx = torch.cat([context, context.new_zeros(b, cfg.text_len - context.shape[1], cfg.text_dim)], dim=1)
    text = lin(model.text_embedding[2], gelu_tanh(lin(model.text_embedding[0], ctx)))
    # 4. control: fold the 2x2 token patch into channels (c, p, q)
    cc = control.shape[1]
    folded = control.reshape(b, cc, f, gh, 2, gw, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * per_tok, -1)
    c = lin(model.patch_embedding_wancamctrl, folded)
    c = c + lin(model.c2ws_hidden_states_layer2, silu(lin(model.c2ws_hidden_states_layer1, c)))
    for blk in model.blocks:
        tok = ref_block(blk, tok, e0_tok, text, c, grid, cfg.num_heads)
    out = ref_head(model.head, tok, e_tok)  # [B, L, 64]
    # 6. unpatchify: channel ((pt*2+ph)*2+pw)*16 + c
    out = out.reshape(b, f, gh, gw, 1, 2, 2, cfg.out_dim)
    return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, cfg.out_dim, f, hh, ww)


def ref_head(head, x, e):
    shift, scale = (head.modulation[0][None, None] + e[:, :, None]).unbind(2)
    return lin(head.head, layer_norm(x) * (1 + scale) + shift)


def _close(a, b, tol=1e-5):
    err = (a - b).abs().max().item()
    scale = b.abs().max().item()
    assert err <= tol * max(1.0, scale), f"max abs err {err:.3g} (ref max {scale:.3g})"


def test_rope_axis_dims_reference_split():
    assert rope_axis_dims(128) == (44, 42, 42)


def test_sinusoid_cos_first():
    t = torch.tensor([0.0, 1.0, 250.0, 999.0])
    s = sinusoidal_embedding(t, 256)
    assert s.shape == (4, 256)
    assert torch.allclose(s[0, :128], torch.ones(128)) and torch.allclose(s[0, 128:], torch.zeros(128))
    assert torch.allclose(s[:, 0], t.cos(), atol=1e-6) and torch.allclose(s[:, 128], t.sin(), atol=1e-6)
    _close(s, ref_sinusoid(t))


def test_unpatchify_known_element():
    model = WanDiT(WanDiTConfig(control_dim=None, **CFG))
    f, gh, gw = 2, 3, 4
    out = torch.zeros(1, f, gh * gw, 64)
    # frame 1, token row 2, token col 1, sub-pixel (ph=1, pw=0), channel 5 -> channel index (1*2+0)*16+5 = 37
    out[0, 1, 2 * gw + 1, (1 * 2 + 0) * 16 + 5] = 7.0
    img = model.unpatchify(out, (f, gh, gw))
    assert img.shape == (1, 16, 2, 6, 8)
    assert img[0, 5, 1, 2 * 2 + 1, 1 * 2 + 0] == 7.0
    assert img.abs().sum() == 7.0


def _block_inputs(model, grid=(3, 2, 3), b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    d = model.cfg.dim
    f, h, w = grid
    x = torch.randn(b, f, h * w, d, generator=g)
    e0 = torch.randn(b, f, 6, d, generator=g) * 0.3
    text = torch.randn(b, model.cfg.text_len, d, generator=g)
    c = torch.randn(b, f * h * w, d, generator=g)
    return x, e0, text, c


def _repo_block(model, blk, x, e0, text, c, grid):
    from world_model.attention import BidirectionalAttention

    attn = BidirectionalAttention(model.rope, grid[0], grid[1:], x.device)
    kv = blk.cross_attn.key_value(text)
    return blk(x, e0, kv, attn, 0, None if c is None else blk.control(c))


@pytest.mark.parametrize("control_dim, layer, grid", [(7, 0, (3, 2, 3)), (None, 1, (2, 3, 2))])
@torch.no_grad()
def test_block_matches_reference(control_dim, layer, grid):
    model = _model(control_dim)
    x, e0, text, c = _block_inputs(model, grid)
    c = c if control_dim else None
    blk = model.blocks[layer]
    got = _repo_block(model, blk, x, e0, text, c, grid)
    e0_tok = e0.repeat_interleave(grid[1] * grid[2], dim=1)
    want = ref_block(blk, x.flatten(1, 2), e0_tok, text, c, grid, model.cfg.num_heads)
    _close(got.flatten(1, 2), want)


@torch.no_grad()
def test_control_injection_matches_reference():
    model = _model(7)
    _, _, _, c = _block_inputs(model)
    for blk in model.blocks:
        got = blk.control(c)
        for a, b in zip(got, ref_injection(blk, c)):
            _close(a, b)


@torch.no_grad()
def test_head_matches_reference():
    model = _model(None)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, model.cfg.dim, generator=g)
    e = torch.randn(2, 3, model.cfg.dim, generator=g)
    got = model.head(x, e)
    want = ref_head(model.head, x.flatten(1, 2), e.repeat_interleave(4, dim=1)).view(2, 3, 4, -1)
    _close(got, want)


@torch.no_grad()
def test_full_forward_matches_reference():
    model = _model(7)
    g = torch.Generator().manual_seed(4)
    b, f, hh, ww = 1, 2, 4, 6
    x = torch.randn(b, 16, f, hh, ww, generator=g)
    y = torch.randn(b, 20, f, hh, ww, generator=g)
    t = torch.tensor([[900.0, 250.0]])
    ctx = torch.randn(b, 5, model.cfg.text_dim, generator=g)
    control = torch.randn(b, 7 * 64, f, hh, ww, generator=g)
    got = model(x, t, ctx, y, control)
    want = ref_forward(model, x, t, ctx, y, control)
    assert got.shape == want.shape == (b, 16, f, hh, ww)
    _close(got, want)


@torch.no_grad()
def test_text_embedding_matches_reference():
    model = _model(None)
    g = torch.Generator().manual_seed(5)
    ctx = torch.randn(2, 5, model.cfg.text_dim, generator=g) * 3
    prepared = model.prepare_context(ctx)
    padded = torch.cat([ctx, ctx.new_zeros(2, model.cfg.text_len - 5, model.cfg.text_dim)], dim=1)
    text = lin(model.text_embedding[2], gelu_tanh(lin(model.text_embedding[0], padded)))
    _close(prepared.text, text)
    for blk, (k, v) in zip(model.blocks, prepared.kv):
        ca = blk.cross_attn
        _close(k.flatten(-2), rms_norm(lin(ca.k, text), ca.norm_k.weight))
        _close(v.flatten(-2), lin(ca.v, text))
