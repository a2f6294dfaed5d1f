"""Self-attention strategies of the Wan DiT. All share the block's q/k/v/o weights; they differ in what a token sees.

* :class:`BidirectionalAttention`: every token sees the whole clip (the teacher).
* :class:`BlockCausalAttention`: a token sees every token up to the end of its own block of frames (the student in
  training). ``flex_attention`` with a cached ``BlockMask`` on CUDA, an exact boolean-masked SDPA elsewhere.
* :class:`CachedAttention`: one chunk at a time against a :class:`~world_model.kv_cache.KVCache` (the student at
  inference). The chunk sees the cached frames and itself.

Each is called per layer as ``attn(layer, q, k, v)`` with un-rotated ``q, k, v`` of shape ``[B, L, H, D]`` and
applies the 3D RoPE itself, because the positions are what differs between the modes.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from world_model.kv_cache import KVCache, WritePlan
from world_model.rope import Rope3D, apply_rope


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention on ``[B, L, H, D]`` tensors (scale ``1/sqrt(D)``); the backend picks the fastest kernel."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def frame_blocks(num_frames: int, block_frames: int, first_block_frames: int | None = None) -> torch.Tensor:
    """Block index of each frame: blocks of ``block_frames`` frames, the first optionally of another size.

    ``first_block_frames=1`` puts the conditioning image alone in block 0 (it is then written to the cache as
    context); the default makes the first block as long as the others (LingBot Fast's layout).
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    first = block_frames if first_block_frames is None else first_block_frames
    if first < 1:
        raise ValueError(f"first_block_frames must be >= 1, got {first}")
    f = torch.arange(num_frames)
    return torch.where(f < first, 0, 1 + torch.div(f - first, block_frames, rounding_mode="floor"))


class BidirectionalAttention:
    """Full attention over a clip of ``num_frames`` frames of ``grid`` tokens each."""

    def __init__(self, rope: Rope3D, num_frames: int, grid: tuple[int, int], device: torch.device) -> None:
        self.cos, self.sin = rope.cos_sin(torch.arange(num_frames, device=device), *grid)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sdpa(apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin), v)


@functools.lru_cache(maxsize=32)
def _flex_block_mask(num_frames: int, tpf: int, block_frames: int, first: int | None, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    seq = num_frames * tpf
    padded = -(-seq // 128) * 128
    token_block = frame_blocks(num_frames, block_frames, first).repeat_interleave(tpf).to(device)
    # Padding tokens get a block index past every real one: real queries never see them.
    token_block = torch.cat([token_block, token_block.new_full((padded - seq,), 1 << 30)])

    def mask_mod(b, h, q_idx, kv_idx):
        return token_block[q_idx] >= token_block[kv_idx]

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=padded, KV_LEN=padded, device=device)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


class BlockCausalAttention:
    """Block-causal attention over a whole clip (training the streaming student)."""

    def __init__(
        self,
        rope: Rope3D,
        num_frames: int,
        grid: tuple[int, int],
        block_frames: int,
        device: torch.device,
        first_block_frames: int | None = None,
        use_flex: bool | None = None,
    ) -> None:
        self.cos, self.sin = rope.cos_sin(torch.arange(num_frames, device=device), *grid)
        tpf = grid[0] * grid[1]
        self.seq = num_frames * tpf
        self.use_flex = device.type == "cuda" if use_flex is None else use_flex
        if self.use_flex:
            self.block_mask = _flex_block_mask(num_frames, tpf, block_frames, first_block_frames, str(device))
            self.padded = self.block_mask.shape[-2]
        else:
            token_block = frame_blocks(num_frames, block_frames, first_block_frames).repeat_interleave(tpf)
            self.mask = (token_block[:, None] >= token_block[None, :]).to(device)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin)
        if not self.use_flex:
            return sdpa(q, k, v, self.mask)
        pad = self.padded - self.seq
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)).transpose(1, 2) for t in (q, k, v))
        out = _compiled_flex()(q, k, v, block_mask=self.block_mask)
        return out.transpose(1, 2)[:, : self.seq]


class CachedAttention:
    """Attention of one chunk against a KV cache; with ``write``, stores the chunk's K/V after attending.

    ``rows`` selects the cache rows that the batch of this call belongs to (default: all, in order)."""

    def __init__(self, cache: KVCache, num_frames: int, write: bool, rows: tuple[int, ...] | None = None) -> None:
        self.cache = cache
        self.plan: WritePlan = cache.plan(num_frames, write, rows)
        self._seen: dict[int, tuple] = {}  # layer -> the cache's K/V this pass attended to (see __call__)
        self._seen_positions: torch.Tensor | None = None  # [len(rows), n] the cache's RoPE positions at the time
        device = cache.k.device
        if len(set(self.plan.positions)) == 1:  # every row at the same positions: one table for the batch
            self.cos, self.sin = cache.rope.cos_sin(torch.tensor(self.plan.positions[0], device=device), *cache.grid)
        else:
            n = len(self.plan.rows)
            cos, sin = cache.rope.cos_sin(torch.tensor(self.plan.positions, device=device).reshape(-1), *cache.grid)
            self.cos, self.sin = cos.view(n, -1, cos.shape[-1]), sin.view(n, -1, sin.shape[-1])

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if layer in self._seen:  # gradient checkpointing's recompute: the cache has moved on since the forward
            ck, cv, key_mask = self._recall(layer)
        else:
            ck, cv, key_mask = self.cache.keys_values(layer, self.plan.rows)
            if torch.is_grad_enabled() and self.plan.slots is None:
                # A pass that keeps gradients may be recomputed in the backward (checkpointing), after later frames
                # were written into the cache and the window rolled: keep what this pass attended to, as the
                # recompute must see it. Frame copies shared with the other passes and the positions, not a copy
                # of the rotated window per pass (see KVCache.frozen).
                n = ck.shape[1] // self.cache.k.shape[3]
                if self._seen_positions is None:
                    self._seen_positions = self.cache.slot_positions()[list(self.plan.rows), :n].clone()
                self._seen[layer] = (self.cache.frozen(layer, self.plan.rows, n), key_mask)
        keys = torch.cat([ck.to(k.dtype), apply_rope(k, self.cos, self.sin)], dim=1)
        values = torch.cat([cv.to(v.dtype), v], dim=1)
        mask = None
        if key_mask is not None:  # rows restarted at different times hold different numbers of frames
            mask = torch.cat([key_mask, key_mask.new_ones(k.shape[0], k.shape[1])], dim=1)[:, None, None, :]
        out = sdpa(apply_rope(q, self.cos, self.sin), keys, values, mask)
        if self.plan.slots is not None:
            self.cache.write(layer, self.plan, k, v)
        return out

    def _recall(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The rotated keys, values and key mask that ``layer`` attended to in this pass's forward, rebuilt from
        the frozen frames (rotated exactly as :meth:`KVCache.keys_values` did: the same values)."""
        frames, key_mask = self._seen[layer]
        b, n = self._seen_positions.shape
        tpf, h, d = self.cache.k.shape[3:]
        if not frames:
            empty = self.cache.k.new_zeros(b, 0, h, d)
            return empty, empty, key_mask
        k = torch.stack([f[0] for f in frames], dim=1).reshape(b, n * tpf, h, d)
        v = torch.stack([f[1] for f in frames], dim=1).reshape(b, n * tpf, h, d)
        cos, sin = self.cache.rope.cos_sin(self._seen_positions.reshape(-1), *self.cache.grid)
        return apply_rope(k, cos.view(b, n * tpf, -1), sin.view(b, n * tpf, -1)), v, key_mask

    def finish(self) -> None:
        if self.plan.slots is not None:
            self.cache.commit(self.plan)
