"""Text encoders behind one interface, with per-prompt caching.

``encoder.encode(prompts)`` -> one ``[L_i, dim]`` tensor per prompt (its real tokens only, EOS included);
``encoder.encode_padded(prompts)`` -> ``([B, L_max, dim]`` zero-padded, ``lengths [B])``. The DiT zero-pads the
context to ``text_len`` itself (``WanDiT.prepare_context``).

* :class:`UMT5TextEncoder`: Wan's umT5-XXL encoder (docs/official_models.md §12) from
  ``models_t5_umt5-xxl-enc-bf16.pth`` and the ``google/umt5-xxl`` tokenizer folder, run by transformers'
  ``UMT5EncoderModel`` after renaming the Wan tensors. transformers is an optional extra, imported only when
  this encoder is built.
* :class:`SmallTextEncoder`: a small trainable encoder for the project's own small models: a fixed byte-level
  vocabulary (no tokenizer files, no external weights) and a few pre-norm transformer layers.
"""

from __future__ import annotations

import html
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from world_model.transfer import to_device_async


def clean_prompt(text: str) -> str:
    """Wan's ``clean='whitespace'``: unescape HTML (twice), fix mojibake when ftfy is installed, collapse spaces."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class TextEncoder(ABC):
    """Prompts -> per-token features, cached per prompt (LRU of ``cache_size`` prompts).

    Subclasses implement :meth:`_encode` for a batch of uncached prompts and may return a cache ``version`` that
    changes whenever their weights change (cached features of older weights are then ignored)."""

    dim: int
    max_length: int

    def __init__(self, cache_size: int = 1024) -> None:
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, Hashable], torch.Tensor] = OrderedDict()

    @abstractmethod
    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        """Encode a batch of prompts: one ``[L_i, dim]`` tensor each (no gradients needed)."""

    def _version(self) -> Hashable:
        return None

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> list[torch.Tensor]:
        """One ``[L_i, dim]`` tensor per prompt (L_i <= ``max_length``, real tokens only).

        Each distinct prompt is encoded once; repeats and later calls are served from the cache. The returned
        tensors are the cached ones: do not modify them in place."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        version = self._version()
        todo = list(dict.fromkeys(p for p in prompts if (p, version) not in self._cache))
        if todo:
            for p, feats in zip(todo, self._encode(todo), strict=True):
                self._cache[(p, version)] = feats.detach()
        out = []
        for p in prompts:
            self._cache.move_to_end((p, version))
            out.append(self._cache[(p, version)])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def encode_padded(self, prompts: str | Sequence[str], length: int | None = None):
        """``(features [B, L, dim], lengths [B])``: zero-padded to the longest prompt (or ``length``)."""
        feats = self.encode(prompts)
        return pad_features(feats, length)


def pad_features(feats: Sequence[torch.Tensor], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[L_i, dim]`` tensors into ``[B, length, dim]`` with zeros after each ``L_i``; returns lengths too."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    length = int(lengths.max()) if length is None else length
    if int(lengths.max()) > length:
        raise ValueError(f"a prompt has {int(lengths.max())} tokens, more than length={length}")
    return torch.stack([F.pad(f, (0, 0, 0, length - f.shape[0])) for f in feats]), lengths


# -- umT5-XXL ----------------------------------------------------------------------------------------------------
UMT5_XXL: dict[str, Any] = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",  # GELU-tanh gate, as Wan's T5 FFN
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    tie_word_embeddings=False,
)

# Wan name -> transformers UMT5EncoderModel name (docs/official_models.md §12). Wan's FFN is ``fc1(x) * gelu(gate(x))``:
# the activated branch ``gate.0`` is ``wi_0``.
_WAN_TO_HF: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^token_embedding\.", "shared."),
        (r"^blocks\.(\d+)\.norm1\.", r"encoder.block.\1.layer.0.layer_norm."),
        (r"^blocks\.(\d+)\.attn\.([qkvo])\.", r"encoder.block.\1.layer.0.SelfAttention.\2."),
        (
            r"^blocks\.(\d+)\.pos_embedding\.embedding\.",
            r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.",
        ),
        (r"^blocks\.(\d+)\.norm2\.", r"encoder.block.\1.layer.1.layer_norm."),
        (r"^blocks\.(\d+)\.ffn\.gate\.0\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_0."),
        (r"^blocks\.(\d+)\.ffn\.fc1\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_1."),
        (r"^blocks\.(\d+)\.ffn\.fc2\.", r"encoder.block.\1.layer.1.DenseReluDense.wo."),
        (r"^norm\.", "encoder.final_layer_norm."),
    )
)


def wan_t5_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Wan umT5 state dict (``token_embedding``, ``blocks.N.attn.q``, ...) to ``UMT5EncoderModel`` names.

    Raises ValueError listing names that are not Wan umT5 encoder names."""
    out, unknown = {}, []
    for name, t in state.items():
        for pattern, repl in _WAN_TO_HF:
            new, n = pattern.subn(repl, name)
            if n:
                out[new] = t
                break
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"{len(unknown)} tensors are not Wan umT5 encoder tensors, e.g. {unknown[:5]}: "
            "is this models_t5_umt5-xxl-enc-bf16.pth?"
        )
    return out


def umt5_config(**overrides: Any):
    """transformers ``UMT5Config`` of umT5-XXL (overrides give tiny test configs)."""
    from transformers import UMT5Config

    return UMT5Config(**{**UMT5_XXL, **overrides})


class UMT5TextEncoder(TextEncoder):
    """umT5-XXL through transformers' ``UMT5EncoderModel``: tokenise (EOS appended, at most 512 tokens), encode,
    trim to the real length.

    Batches are padded to their longest prompt rather than to 512: padded keys are masked, so the real tokens'
    features are the same and short prompts cost far less."""

    def __init__(self, model: nn.Module, tokenizer: Any = None, max_length: int = 512, cache_size: int = 1024):
        super().__init__(cache_size)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dim = int(model.config.d_model)

    @classmethod
    def from_wan(
        cls,
        checkpoint: str | Path | Mapping[str, torch.Tensor],
        tokenizer: str | Path | Any | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        config: Any = None,
        max_length: int = 512,
    ) -> UMT5TextEncoder:
        """Build from Wan's ``models_t5_umt5-xxl-enc-bf16.pth`` (or its state dict) and tokenizer folder.

        Args:
            checkpoint: the ``.pth`` (read with ``torch.load(weights_only=True, mmap=True)``, refused when its pickle
                imports anything but tensors) or a state dict.
            tokenizer: the ``google/umt5-xxl`` folder, a loaded tokenizer, or None (then use :meth:`encode_ids`).
            config: a transformers ``UMT5Config`` (default: umT5-XXL).
        """
        from transformers import AutoTokenizer, UMT5EncoderModel

        config = config or umt5_config()
        if isinstance(checkpoint, Mapping):
            state = dict(checkpoint)
        else:
            path = Path(checkpoint)
            from world_model.safe_files import safe_torch_load

            # weights_only=True after a scan of the pickle's globals: a file that would run code is refused, named.
            state = safe_torch_load(path, "umT5 weights file", mmap=True)
        hf = wan_t5_to_hf(state)
        with torch.device("meta"):
            model = UMT5EncoderModel(config)
        try:
            missing, unexpected = model.load_state_dict(hf, strict=False, assign=True)
        except RuntimeError as exc:
            raise ValueError(f"the umT5 weights do not fit the config (d_model={config.d_model}): {exc}") from exc
        # The encoder's input embedding is the shared one (tied); it is not in Wan's file.
        missing = [k for k in missing if k != "encoder.embed_tokens.weight"]
        if missing or unexpected:
            raise ValueError(f"umT5 weights: missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]}")
        model.encoder.embed_tokens.weight = model.shared.weight
        model = model.to(device=device, dtype=dtype)
        if isinstance(tokenizer, str | Path):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        return cls(model, tokenizer, max_length)

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @torch.no_grad()
    def encode_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """``input_ids``, ``attention_mask`` ``[B, L]`` -> one ``[L_i, dim]`` per row, ``L_i = mask[i].sum()``."""
        ids, mask = input_ids.to(self.device), attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return [h[: int(n)] for h, n in zip(hidden, mask.sum(dim=1))]

    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        if self.tokenizer is None:
            raise RuntimeError("this UMT5TextEncoder has no tokenizer: pass tokenizer= to from_wan, or use encode_ids")
        tok = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=True,  # appends EOS </s>, as Wan does
            return_attention_mask=True,
            return_tensors="pt",
        )
        return self.encode_ids(tok["input_ids"], tok["attention_mask"])


# -- small trainable encoder --------------------------------------------------------------------------------------
class ByteTokenizer:
    """A fixed vocabulary: the 256 UTF-8 byte values plus PAD (0) and EOS (1). No files, no training."""

    PAD, EOS, OFFSET = 0, 1, 2
    vocab_size = 256 + OFFSET

    def __call__(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``ids, mask`` ``[B, L]`` (L = longest, at most ``max_length``; EOS kept after truncation)."""
        rows = [
            [b + self.OFFSET for b in clean_prompt(t).encode("utf-8")][: max_length - 1] + [self.EOS] for t in texts
        ]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, ids != self.PAD


@dataclass(frozen=True)
class SmallTextEncoderConfig:
    """Shape of :class:`SmallTextEncoder`. ``out_dim`` must equal the DiT's ``text_dim``."""

    out_dim: int = 256
    dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 1024
    max_length: int = 128  # bytes + EOS

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")


class SmallTextEncoder(TextEncoder, nn.Module):
    """Byte embeddings + learned positions -> pre-norm transformer layers -> LayerNorm -> Linear to ``out_dim``.

    Train it with :meth:`forward` (gradients flow); :meth:`encode` serves cached features for inference and notices
    weight updates (parameter versions are part of the cache key)."""

    def __init__(self, config: SmallTextEncoderConfig | None = None, cache_size: int = 1024) -> None:
        nn.Module.__init__(self)
        TextEncoder.__init__(self, cache_size)
        self.config = c = config or SmallTextEncoderConfig()
        self.dim = c.out_dim
        self.max_length = c.max_length
        self.tokenizer = ByteTokenizer()
        self.token_embedding = nn.Embedding(ByteTokenizer.vocab_size, c.dim)
        self.pos_embedding = nn.Embedding(c.max_length, c.dim)
        layer = nn.TransformerEncoderLayer(
            c.dim, c.num_heads, c.ffn_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.proj = nn.Linear(c.dim, c.out_dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embedding.weight, std=0.02)

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``(features [B, L, out_dim]`` zero after each prompt's length, ``lengths [B])``; differentiable."""
        device = self.proj.weight.device
        ids, mask = self.tokenizer(prompts, self.max_length)
        lengths = mask.sum(dim=1)  # counted on the host: reading them back from the GPU would stall training
        ids, mask = to_device_async(ids, device), to_device_async(mask, device)
        pos = torch.arange(ids.shape[1], device=device)
        h = self.token_embedding(ids) + self.pos_embedding(pos)[None]
        h = self.layers(h, src_key_padding_mask=~mask)
        out = self.proj(self.norm(h)) * mask[..., None]
        return out, lengths

    def _version(self) -> Hashable:
        return tuple(p._version for p in self.parameters())

    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        was_training = self.training
        self.eval()
        try:
            out, lengths = self(prompts)
        finally:
            self.train(was_training)
        return [o[: int(n)] for o, n in zip(out, lengths)]


def build_text_encoder(kind: str, root: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """A preset's text encoder by kind: ``"umt5-xxl"`` (Wan files under ``root``) or ``"small"``.

    ``kwargs`` go to :meth:`UMT5TextEncoder.from_wan` (``device``, ``dtype``) or :class:`SmallTextEncoderConfig`."""
    if kind == "umt5-xxl":
        if root is None:
            raise ValueError("the umt5-xxl text encoder needs root= (the folder with models_t5_umt5-xxl-enc-bf16.pth)")
        root = Path(root)
        return UMT5TextEncoder.from_wan(root / "models_t5_umt5-xxl-enc-bf16.pth", root / "google/umt5-xxl", **kwargs)
    if kind == "small":
        return SmallTextEncoder(SmallTextEncoderConfig(**kwargs))
    raise ValueError(f"unknown text encoder kind {kind!r}: use 'umt5-xxl' or 'small'")
