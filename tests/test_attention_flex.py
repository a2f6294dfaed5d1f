"""BlockCausalAttention's flex_attention path (the default on CUDA) equals its masked-SDPA fallback (elsewhere).

flex_attention also runs on the CPU through torch.compile/Inductor, so the CUDA path's mask (padding to 128,
the first block, block boundaries) is checked here too. One tiny shape, one compile: most of the time is Inductor.
"""

import importlib.util
import shutil

import pytest
import torch

from world_model.attention import BlockCausalAttention
from world_model.rope import Rope3D


def _flex_skip_reason() -> str | None:
    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
    from torch._dynamo import is_dynamo_supported

    if not is_dynamo_supported():
        return "torch.compile (Dynamo) is not supported on this Python/platform"
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        return "no C++ compiler on PATH: Inductor cannot compile flex_attention for the CPU"
    return None


@pytest.mark.skipif(_flex_skip_reason() is not None, reason=str(_flex_skip_reason()))
def test_flex_block_causal_matches_masked_sdpa():
    torch.manual_seed(0)
    rope = Rope3D(16)
    # 5 frames of 2x3 tokens (30 tokens, padded to 128 for flex); blocks [0 | 1 1 | 2 2]: a lone first frame.
    frames, grid, block, first = 5, (2, 3), 2, 1
    q, k, v = (torch.randn(1, frames * 6, 2, 16) for _ in range(3))
    cpu = torch.device("cpu")
    flex = BlockCausalAttention(rope, frames, grid, block, cpu, first_block_frames=first, use_flex=True)
    ref = BlockCausalAttention(rope, frames, grid, block, cpu, first_block_frames=first, use_flex=False)
    assert flex.use_flex and not ref.use_flex and flex.padded == 128
    out, expected = flex(0, q, k, v), ref(0, q, k, v)
    assert out.shape == expected.shape == q.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The mask matters: one block of all frames (full attention) gives something else, so the check is not vacuous.
    full = BlockCausalAttention(rope, frames, grid, frames, cpu, use_flex=False)(0, q, k, v)
    assert (full - expected).abs().max() > 1e-2
