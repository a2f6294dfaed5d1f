"""FP8 (float8_e4m3fn) linears for the DiT's attention and FFN matmuls, for inference on Hopper (and Ada).

Scheme (W8A8, both scaled per row):

* weight ``[N, K]``: quantized once, one float32 scale per output row, ``scale_w = amax(|w[n, :]|) / 448``;
* activation ``[M, K]`` (M tokens): quantized on every call, one scale per token, ``scale_x = amax(|x[m, :]|) / 448``;
* ``y = (q_x * scale_x) @ (q_w * scale_w).T + bias``, in the dtype the linear had (bf16 at full size).

448 is the largest finite float8_e4m3fn value, so each row uses the whole fp8 range. On CUDA with compute capability
>= 8.9 the product is one ``torch._scaled_mm`` (fp8 tensor cores, fp32 accumulation, the scales applied in its
epilogue). Elsewhere (CPU, older GPUs, shapes or dtypes ``_scaled_mm`` does not take) the same fp8 tensors are
dequantized to float32 and multiplied: an exact emulation of the quantization error, so the CPU tests measure what
the GPU path computes up to the accumulation order.

Only the per-token blocks' matmuls are quantized (:func:`quantize_linears_fp8_`); the time embedding, the text and
camera embeddings, norms, modulation and the head keep their precision.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448.0
_EPS = 1e-12  # floor of a row's amax: an all-zero row gets a tiny scale, not a division by zero

# The attention q/k/v/o and FFN linears of every WanBlock (names as in ``WanDiT.named_modules()``).
DEFAULT_INCLUDE = ("blocks.*.self_attn.[qkvo]", "blocks.*.cross_attn.[qkvo]", "blocks.*.ffn.0", "blocks.*.ffn.2")


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[M, K]`` (any float dtype) -> ``(q, scale)``: ``q`` ``[M, K]`` float8_e4m3fn and ``scale`` ``[M, 1]``
    float32 with ``x ~= q.float() * scale`` (one scale per row, ``amax / 448``)."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp_min(_EPS) / FP8_MAX
    q = (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


def scaled_mm_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` runs fp8 on ``device``: CUDA with compute capability >= 8.9 (Ada, Hopper)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


class Float8Linear(nn.Module):
    """An ``nn.Linear`` with its weight stored in fp8 and its input quantized per token on each call.

    Buffers: ``weight`` ``[N, K]`` float8_e4m3fn, ``weight_scale`` ``[N, 1]`` float32, ``bias`` ``[N]`` in
    ``out_dtype`` (or None). ``forward``: ``[..., K]`` of any float dtype -> ``[..., N]`` in ``out_dtype``.

    ``use_scaled_mm``: None picks ``torch._scaled_mm`` where it runs (:func:`scaled_mm_supported`, bf16 output,
    K and N multiples of 16); False always emulates (dequantize to float32, matmul). Made for inference: there is no
    backward through the quantization, and casting the model's dtype afterwards (``model.to(torch.bfloat16)``) would
    cast the fp8 buffers too: quantize last.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        out_dtype: torch.dtype | None = None,
        use_scaled_mm: bool | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.out_dtype = out_dtype or weight.dtype
        self.use_scaled_mm = use_scaled_mm
        with torch.no_grad():
            q, scale = quantize_rows(weight.detach())
        self.register_buffer("weight", q)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().to(self.out_dtype).clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, use_scaled_mm: bool | None = None) -> Float8Linear:
        """Quantize ``linear`` (its dtype becomes ``out_dtype``)."""
        return cls(linear.weight, linear.bias, linear.weight.dtype, use_scaled_mm)

    def _scaled_mm_ok(self, x: torch.Tensor) -> bool:
        if self.use_scaled_mm is False or not scaled_mm_supported(x.device):
            return False
        # Row-wise scales: bf16 output, and the fp8 GEMM wants K and N divisible by 16.
        return self.out_dtype == torch.bfloat16 and self.in_features % 16 == 0 and self.out_features % 16 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        qx, sx = quantize_rows(x.reshape(-1, self.in_features))  # [M, K] fp8, [M, 1] fp32
        if self._scaled_mm_ok(x):
            # b must be column-major [K, N]: the transpose of the row-major [N, K] weight; scale_b is [1, N].
            y = torch._scaled_mm(
                qx,
                self.weight.t(),
                scale_a=sx,
                scale_b=self.weight_scale.view(1, -1),
                bias=self.bias,
                out_dtype=self.out_dtype,
            )
        else:
            y = self.emulate(qx, sx)
        return y.reshape(*lead, self.out_features)

    def emulate(self, qx: torch.Tensor, sx: torch.Tensor) -> torch.Tensor:
        """The fp8 product in float32: ``qx`` ``[M, K]`` fp8, ``sx`` ``[M, 1]`` -> ``[M, N]`` in ``out_dtype``."""
        w = self.weight.float() * self.weight_scale  # [N, K]
        y = (qx.float() * sx) @ w.t()
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(self.out_dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, out_dtype={self.out_dtype}"


def quantize_linears_fp8_(
    model: nn.Module,
    include: tuple[str, ...] = DEFAULT_INCLUDE,
    exclude: tuple[str, ...] = (),
    use_scaled_mm: bool | None = None,
) -> int:
    """Replace, in place, every ``nn.Linear`` of ``model`` whose name matches a glob of ``include`` and none of
    ``exclude`` (``fnmatch``, case-sensitive, on ``named_modules()`` names) by a :class:`Float8Linear`; returns how
    many were replaced.

    The default ``include`` is a ``WanDiT``'s block attention (self and cross, q/k/v/o) and FFN linears:
    ``num_layers * 10`` layers. The time embedding / projection, text and camera embeddings, the camera injector
    layers, norms and head are not matched and stay as they are. Call it after the model has its final device and
    dtype (e.g. ``quantize_linears_fp8_(model.to("cuda", torch.bfloat16).eval())``), and before ``model.compile()``.
    """
    todo = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and any(fnmatchcase(name, p) for p in include)
        and not any(fnmatchcase(name, p) for p in exclude)
    ]
    for name, m in todo:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, Float8Linear.from_linear(m, use_scaled_mm))
    return len(todo)
