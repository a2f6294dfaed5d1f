"""The Wan DiT with LingBot-World's camera/action layers, in one file.

Parameter names and shapes are the official ones (docs/official_models.md §2, §3), so official checkpoints load without
renaming. The same weights run in three attention modes (see ``world_model.attention``): bidirectional (teacher),
block-causal (student training) and KV-cached streaming (student inference).

Forward, for a latent clip ``x`` ``[B, 16, F, H, W]`` (H, W in latent pixels), per-frame timesteps ``t`` ``[B, F]``:

1. ``tokens = patch_embedding(cat[x, y])``: Conv3d 1x2x2 -> ``[B, F*(H/2)*(W/2), d]``, ordered frame, row, col.
2. ``e = time_embedding(sinusoid(t))`` ``[B, F, d]``, ``e0 = time_projection(e)`` ``[B, F, 6, d]`` (fp32).
3. ``text = text_embedding(pad_512(context))``; each block caches its cross-attention K/V once per prompt.
4. control (optional): ``c = patch_embedding_wancamctrl(fold(control)); c = c + MLP(c)``; per block
   ``h = MLP_inj(c) + c`` gives ``scale, shift``. Depends only on the control input: computed once per chunk.
5. block: ``shift1, scale1, gate1, shift2, scale2, gate2 = modulation + e0``;
   ``x += gate1 * self_attn(norm1(x) * (1 + scale1) + shift1)``; ``x = (1 + scale_c) * x + shift_c``;
   ``x += cross_attn(norm3(x), text)``; ``x += gate2 * ffn(norm2(x) * (1 + scale2) + shift2)``.
6. head: ``shift, scale = head.modulation + e``; ``head(norm(x) * (1 + scale) + shift)``; unpatchify.

The output is the flow velocity ``v = noise - x0``. The residual stream, norms and modulation run in fp32;
the matmuls in the parameter dtype (bf16 at full size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from world_model.attention import BidirectionalAttention, BlockCausalAttention, CachedAttention, sdpa
from world_model.config import WanDiTConfig
from world_model.kv_cache import KVCache
from world_model.rope import Rope3D

MAX_TIMESTEP = 1000.0
ATTENTION_MODES = ("bidirectional", "block_causal", "streaming")


def _lin(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply ``layer`` in its own dtype (bf16 matmul at full size) whatever the dtype of ``x``. An fp8 layer
    (``world_model.fp8.Float8Linear``) gets ``x`` as it is: it quantizes its input itself, with a scale per token."""
    dtype = layer.weight.dtype
    return layer(x if dtype == torch.float8_e4m3fn else x.to(dtype))


def _lin_fp32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.float(), layer.weight.float(), layer.bias.float())


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N]`` raw timesteps in [0, 1000] -> ``[N, dim]`` float32, cos half first, freqs ``10000^(-k/(dim/2))``."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    ang = torch.outer(t.double(), freqs)
    return torch.cat([ang.cos(), ang.sin()], dim=1).float()


class RMSNorm(nn.Module):
    """RMS norm over the last dim (the whole model width, before heads are split), weight only."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the parameter dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


class Attention(nn.Module):
    """q/k/v/o projections with RMS-normed q and k; used for self- and cross-attention."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.norm_q(_lin(self.q, x)))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.norm_k(_lin(self.k, x))), self.heads(_lin(self.v, x))

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return _lin(self.o, x.flatten(-2)).float()


@dataclass
class PreparedContext:
    """Text context embedded once per prompt: ``text`` ``[B, text_len, d]`` and per-layer cross K/V."""

    text: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def batch_size(self) -> int:
        return self.text.shape[0]


@dataclass
class ControlFeatures:
    """Camera/action features of one clip or chunk: per layer ``(scale, shift)`` ``[B, L, d]``."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    num_frames: int
    grid: tuple[int, int]

    @property
    def batch_size(self) -> int:
        return self.layers[0][0].shape[0]


class WanBlock(nn.Module):
    def __init__(self, cfg: WanDiTConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = Attention(d, cfg.num_heads, cfg.eps)
        self.norm3 = LayerNorm(d, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = Attention(d, cfg.num_heads, cfg.eps)
        self.norm2 = LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d**0.5)
        if cfg.control_dim is not None:
            self.cam_injector_layer1 = nn.Linear(d, d)
            self.cam_injector_layer2 = nn.Linear(d, d)
            self.cam_scale_layer = nn.Linear(d, d)
            self.cam_shift_layer = nn.Linear(d, d)

    def cross_key_value(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedded text ``[B, L, d]`` -> this block's cross-attention ``(K, V)``. A block method of its own (as
        :meth:`control` is) so that a sharded block (FSDP) can gather its weights for it as for ``forward``."""
        return self.cross_attn.key_value(text)

    def control(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c`` ``[B, L, d]`` -> this block's camera ``(scale, shift)``."""
        h = _lin(self.cam_injector_layer2, F.silu(_lin(self.cam_injector_layer1, c))) + c
        return _lin(self.cam_scale_layer, h), _lin(self.cam_shift_layer, h)

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        self_attention,
        layer: int,
        control: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """``x`` ``[B, F, S, d]`` fp32 (S tokens per frame), ``e0`` ``[B, F, 6, d]`` -> same shape as ``x``.

        The attention call sits between two pure tensor functions so that :meth:`WanDiT.compile` can fuse the
        fp32 norm / modulation / residual arithmetic around it while the cache bookkeeping stays in Python."""
        mod = (self.modulation.float() + e0).unsqueeze(3)  # [B, F, 6, 1, d]
        q, k, v = self._qkv(x, mod)
        return self._after_attention(x, self_attention(layer, q, k, v), mod, cross_kv, control)

    def qkv(self, x: torch.Tensor, mod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, f, s, d = x.shape
        h = (self.norm1(x) * (1 + mod[:, :, 1]) + mod[:, :, 0]).reshape(b, f * s, d)
        return (self.self_attn.query(h), *self.self_attn.key_value(h))

    def after_attention(
        self,
        x: torch.Tensor,
        attn: torch.Tensor,
        mod: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        control: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        b, f, s, d = x.shape
        x = x + mod[:, :, 2] * self.self_attn.out(attn).view(b, f, s, d)
        if control is not None:
            scale_c, shift_c = (t.float().view(b, f, s, d) for t in control)
            x = (1 + scale_c) * x + shift_c
        h = self.norm3(x).reshape(b, f * s, d)
        x = x + self.cross_attn.out(sdpa(self.cross_attn.query(h), *cross_kv)).view(b, f, s, d)
        h = self.norm2(x) * (1 + mod[:, :, 4]) + mod[:, :, 3]
        return x + mod[:, :, 5] * _lin(self.ffn[2], self.ffn[1](_lin(self.ffn[0], h))).float()

    # Plain methods by default; WanDiT.compile() swaps in compiled versions.
    _qkv = qkv
    _after_attention = after_attention


class Head(nn.Module):
    def __init__(self, cfg: WanDiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * cfg.patch_tokens)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, F, S, d]``, ``e`` ``[B, F, d]`` -> ``[B, F, S, out_dim * patch]``."""
        shift, scale = (self.modulation.float() + e.unsqueeze(2)).unsqueeze(3).unbind(2)
        return _lin(self.head, self.norm(x) * (1 + scale) + shift).float()


class WanDiT(nn.Module):
    """Wan2.1/2.2 DiT (+ LingBot control layers when ``cfg.control_dim`` is set)."""

    def __init__(self, cfg: WanDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        if cfg.control_dim is not None:
            self.patch_embedding_wancamctrl = nn.Linear(cfg.control_in_features, d)
            self.c2ws_hidden_states_layer1 = nn.Linear(d, d)
            self.c2ws_hidden_states_layer2 = nn.Linear(d, d)
        self.blocks = nn.ModuleList(WanBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = Rope3D(cfg.head_dim, cfg.rope_max_positions)
        self.gradient_checkpointing = False  # recompute blocks in backward (training memory for compute)
        self.reset_parameters()

    # -- init ----------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Wan's init: Xavier linears, small-normal embeddings, zero output head; zero camera scale/shift so a
        freshly added control path starts as the identity. Sets every parameter, so it also initialises a model
        materialised from ``meta`` with ``to_empty``."""
        if any(p.is_meta for p in self.parameters()):
            return
        d = self.cfg.dim
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (RMSNorm, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        nn.init.zeros_(self.patch_embedding.bias)
        for seq in (self.text_embedding, self.time_embedding):
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        with torch.no_grad():
            for blk in self.blocks:
                blk.modulation.copy_(torch.randn(blk.modulation.shape) / d**0.5)
            self.head.modulation.copy_(torch.randn(self.head.modulation.shape) / d**0.5)
        nn.init.zeros_(self.head.head.weight)
        for blk in self.blocks if self.cfg.control_dim is not None else ():
            for m in (blk.cam_scale_layer, blk.cam_shift_layer):
                nn.init.zeros_(m.weight)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def compile(self, **kwargs) -> WanDiT:
        """Compile each block's pointwise-heavy halves (fp32 norms, modulation, residuals fused around the bf16
        matmuls). The attention call and the KV-cache bookkeeping between them stay eager. Returns self.

        This suits streaming inference, where the cache changes between calls. Training, with fixed shapes and no
        cache, should compile the whole forward instead (``torch.compile(model)``: one graph, forward and
        backward; this per-block form left a teacher step host-bound at the speed of eager mode)."""
        for blk in self.blocks:
            blk._qkv = torch.compile(blk.qkv, **kwargs)
            blk._after_attention = torch.compile(blk.after_attention, **kwargs)
        return self

    # -- conditioning, computed once and reused ------------------------------------------------------------
    def prepare_context(self, context: torch.Tensor) -> PreparedContext:
        """``context`` ``[B, L, text_dim]`` (L <= text_len, real tokens only) -> embedded text + cross K/V.

        Zero-padded to ``text_len`` and not masked, as in Wan."""
        cfg = self.cfg
        if context.ndim != 3 or context.shape[-1] != cfg.text_dim:
            raise ValueError(f"context must be [B, L, {cfg.text_dim}], got {tuple(context.shape)}")
        if context.shape[1] > cfg.text_len:
            raise ValueError(f"context has {context.shape[1]} tokens, more than text_len={cfg.text_len}")
        ctx = F.pad(context, (0, 0, 0, cfg.text_len - context.shape[1]))
        text = _lin(self.text_embedding[2], self.text_embedding[1](_lin(self.text_embedding[0], ctx)))
        kv = [blk.cross_key_value(text) for blk in self.blocks]
        return PreparedContext(text, kv)

    def prepare_control(self, control: torch.Tensor) -> ControlFeatures:
        """``control`` ``[B, control_dim * 64, F, H, W]`` (space-to-depth 8x8 control map at latent resolution)
        -> per-layer camera scale/shift. Independent of x and t: compute once per chunk."""
        cfg = self.cfg
        if cfg.control_dim is None:
            raise ValueError("this model has no control layers (control_dim=None): pass control=None")
        want = cfg.control_dim * cfg.control_patch**2
        if control.ndim != 5 or control.shape[1] != want:
            raise ValueError(
                f"control must be [B, {want}, F, H, W] ({cfg.control_dim} ray/action channels x "
                f"{cfg.control_patch}x{cfg.control_patch} space-to-depth), got {tuple(control.shape)}"
            )
        _, ph, pw = cfg.patch_size
        if control.shape[3] % ph or control.shape[4] % pw:
            raise ValueError(f"control H, W {tuple(control.shape[3:])} must be divisible by the patch {ph}x{pw}")
        folded = rearrange(control, "b c f (h p) (w q) -> b (f h w) (c p q)", p=ph, q=pw)
        c = _lin(self.patch_embedding_wancamctrl, folded)
        c = c + _lin(self.c2ws_hidden_states_layer2, F.silu(_lin(self.c2ws_hidden_states_layer1, c)))
        layers = [blk.control(c) for blk in self.blocks]
        return ControlFeatures(layers, control.shape[2], (control.shape[3] // ph, control.shape[4] // pw))

    def time_embed(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``t`` ``[B, F]`` -> ``e`` ``[B, F, d]``, ``e0`` ``[B, F, 6, d]``, all fp32."""
        b, f = t.shape
        s = sinusoidal_embedding(t.reshape(-1), self.cfg.freq_dim)
        e = _lin_fp32(self.time_embedding[2], F.silu(_lin_fp32(self.time_embedding[0], s)))
        e0 = _lin_fp32(self.time_projection[1], F.silu(e))
        return e.view(b, f, -1), e0.view(b, f, 6, -1)

    # -- forward -------------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | PreparedContext,
        y: torch.Tensor | None = None,
        control: torch.Tensor | ControlFeatures | None = None,
        *,
        attention: str = "bidirectional",
        block_frames: int = 1,
        first_block_frames: int | None = None,
        kv_cache: KVCache | None = None,
        write_cache: bool = False,
        cache_rows: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        Args:
            x: noisy latents ``[B, out_dim, F, H, W]``.
            t: timesteps in [0, 1000], ``[B]`` (one per sample) or ``[B, F]`` (one per latent frame).
            context: text features ``[B, L, text_dim]`` or a :class:`PreparedContext`.
            y: image condition ``[B, in_dim - out_dim, F, H, W]`` (mask + first-frame latent), I2V only.
            control: ``[B, control_dim * 64, F, H, W]`` or :class:`ControlFeatures`; None skips the control path.
            attention: ``"bidirectional"``, ``"block_causal"`` (blocks of ``block_frames`` frames, the first of
                ``first_block_frames``) or ``"streaming"`` (``x`` is the next chunk after the frames in ``kv_cache``;
                with ``write_cache`` its K/V are appended after attending). ``cache_rows`` maps the batch rows of
                ``x`` to rows of the cache (default: all rows, in order), e.g. to re-prime one stream of a batch.
        Returns:
            ``v`` ``[B, out_dim, F, H, W]`` float32.
        """
        b, f, h, w = self._check_inputs(x, t, y, attention, kv_cache, cache_rows)
        t = t.to(x.device).float()
        t = t[:, None].expand(b, f) if t.ndim == 1 else t
        ctx = context if isinstance(context, PreparedContext) else self.prepare_context(context.to(self.device))
        if ctx.batch_size != b:
            raise ValueError(f"context batch {ctx.batch_size} != x batch {b}")
        ctrl = self._control_features(control, b, f, (h, w))

        xin = x if y is None else torch.cat([x, y.to(x.dtype)], dim=1)
        tokens = self.patch_embedding(xin.to(self.dtype)).float()  # [B, d, F, h, w]
        tokens = rearrange(tokens, "b d f h w -> b f (h w) d")
        e, e0 = self.time_embed(t)

        if attention == "bidirectional":
            attn = BidirectionalAttention(self.rope, f, (h, w), x.device)
        elif attention == "block_causal":
            attn = BlockCausalAttention(self.rope, f, (h, w), block_frames, x.device, first_block_frames)
        else:
            attn = CachedAttention(kv_cache, f, write_cache, cache_rows)
        # Gradient checkpointing recomputes a block in the backward pass: only where the block has no side effect
        # (a pass that writes the KV cache would write twice).
        recompute = self.gradient_checkpointing and torch.is_grad_enabled() and not write_cache
        for i, blk in enumerate(self.blocks):
            c = None if ctrl is None else ctrl.layers[i]
            if recompute:
                tokens = torch.utils.checkpoint.checkpoint(blk, tokens, e0, ctx.kv[i], attn, i, c, use_reentrant=False)
            else:
                tokens = blk(tokens, e0, ctx.kv[i], attn, i, c)
        if isinstance(attn, CachedAttention):
            attn.finish()
        return self.unpatchify(self.head(tokens, e), (f, h, w))

    def unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, F, S, out_dim * pt*ph*pw]`` (channel = ((pt*ph + ph_i)*pw + pw_i)*C + c) -> ``[B, C, F', H, W]``."""
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        return rearrange(
            out,
            "b f (h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
            h=h,
            w=w,
            pt=pt,
            ph=ph,
            pw=pw,
        )

    def new_kv_cache(
        self, cache_config, batch_size: int, latent_hw: tuple[int, int], dtype: torch.dtype | None = None
    ) -> KVCache:
        """A preallocated KV cache for streaming at latent size ``latent_hw`` (H, W in latent pixels)."""
        _, ph, pw = self.cfg.patch_size
        grid = (latent_hw[0] // ph, latent_hw[1] // pw)
        return KVCache(
            cache_config,
            self.cfg.num_layers,
            batch_size,
            grid,
            self.cfg.num_heads,
            self.cfg.head_dim,
            self.rope,
            device=self.device,
            dtype=dtype or self.dtype,
        )

    # -- validation ----------------------------------------------------------------------------------------
    def _control_features(self, control, b: int, f: int, grid: tuple[int, int]) -> ControlFeatures | None:
        if control is None:
            return None
        ctrl = control if isinstance(control, ControlFeatures) else self.prepare_control(control.to(self.device))
        if ctrl.batch_size != b or ctrl.num_frames != f or ctrl.grid != grid:
            raise ValueError(
                f"control is for batch {ctrl.batch_size}, {ctrl.num_frames} frames, token grid {ctrl.grid}; "
                f"x has batch {b}, {f} frames, token grid {grid}"
            )
        return ctrl

    def _check_inputs(self, x, t, y, attention, kv_cache, cache_rows) -> tuple[int, int, int, int]:
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.out_dim:
            raise ValueError(f"x must be [B, {cfg.out_dim}, F, H, W] latents, got {tuple(x.shape)}")
        b, _, f, hh, ww = x.shape
        pt, ph, pw = cfg.patch_size
        if hh % ph or ww % pw or f % pt:
            raise ValueError(
                f"latent size F={f}, H={hh}, W={ww} is not divisible by the patch {cfg.patch_size}: latent H and W "
                f"must be multiples of {ph} (image pixels multiples of {ph * 8})"
            )
        if cfg.cond_dim:
            if y is None:
                raise ValueError(f"this I2V model needs y [B, {cfg.cond_dim}, F, H, W] (mask + image latent)")
            if tuple(y.shape) != (b, cfg.cond_dim, f, hh, ww):
                raise ValueError(f"y must be {(b, cfg.cond_dim, f, hh, ww)}, got {tuple(y.shape)}")
        elif y is not None:
            raise ValueError("this model takes no image condition (in_dim == out_dim): pass y=None")
        if not torch.is_tensor(t) or t.ndim not in (1, 2) or t.shape[0] != b or (t.ndim == 2 and t.shape[1] != f):
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"t must be a tensor [B]={[b]} or [B, F]={[b, f]}, got {shape}")
        # One host sync in eager mode; skipped when compiled, where it would split the graph (the training loop).
        if not torch.compiler.is_compiling() and not ((t >= 0) & (t <= MAX_TIMESTEP)).all():
            raise ValueError(f"timesteps must be in [0, {MAX_TIMESTEP:g}], got min {t.min()}, max {t.max()}")
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if attention == "streaming":
            if kv_cache is None:
                raise ValueError("streaming attention needs kv_cache (see WanDiT.new_kv_cache)")
            rows = kv_cache.batch_size if cache_rows is None else len(cache_rows)
            if rows != b or kv_cache.grid != (hh // ph, ww // pw):
                raise ValueError(
                    f"kv_cache rows {rows} with grid {kv_cache.grid} do not match x with batch {b}, "
                    f"grid {(hh // ph, ww // pw)}"
                )
            if cache_rows is not None and not all(0 <= r < kv_cache.batch_size for r in cache_rows):
                raise ValueError(f"cache_rows {cache_rows} outside the cache's {kv_cache.batch_size} rows")
        return b, f // pt, hh // ph, ww // pw


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_token(cfg: WanDiTConfig, kv_len: int) -> float:
    """Matmul FLOPs (2 x multiply-adds) of one DiT pass per query token attending to ``kv_len`` tokens.

    Counts the self-attention projections, the attention itself, the cross-attention query/output projections
    and attention over ``text_len`` tokens, and the FFN; the cross K/V and the camera layers are cached per prompt
    and per chunk, so they are not part of a pass."""
    d = cfg.dim
    macs = 4 * d * d + 2 * d * cfg.ffn_dim + 2 * d * d + 2 * d * kv_len + 2 * d * cfg.text_len
    return 2.0 * (cfg.num_layers * macs + d * cfg.out_dim * cfg.patch_tokens)
