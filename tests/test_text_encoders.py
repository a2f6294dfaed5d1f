"""Text encoders: Wan's umT5 file through transformers' UMT5EncoderModel (rename + tokenisation), and the small
trainable encoder. Nothing is downloaded: tiny random models and a locally built tokenizer."""

import inspect
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from world_model.checkpoints.text_encoders import (  # noqa: E402
    SmallTextEncoder,
    SmallTextEncoderConfig,
    UMT5TextEncoder,
    clean_prompt,
    pad_features,
    umt5_config,
    wan_t5_to_hf,
)

TINY = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_max_distance=20)

# transformers -> Wan names, written out from docs/official_models.md §12 (the inverse of what the loader does).
HF_TO_WAN = [
    (r"^shared\.", "token_embedding."),
    (
        r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.",
        r"blocks.\1.pos_embedding.embedding.",
    ),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.", r"blocks.\1.attn.\2."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"blocks.\1.norm1."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"blocks.\1.norm2."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", r"blocks.\1.ffn.gate.0."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", r"blocks.\1.ffn.fc1."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", r"blocks.\1.ffn.fc2."),
    (r"^encoder\.final_layer_norm\.", "norm."),
]


def to_wan(hf_state):
    out = {}
    for k, v in hf_state.items():
        if k == "encoder.embed_tokens.weight":  # tied to shared; Wan stores it once
            continue
        for p, r in HF_TO_WAN:
            new, n = re.subn(p, r, k)
            if n:
                out[new] = v.clone()
                break
        else:
            raise AssertionError(f"unmapped {k}")
    return out


@pytest.fixture(scope="module")
def tiny_umt5():
    torch.manual_seed(0)
    model = transformers.UMT5EncoderModel(umt5_config(**TINY)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def wan_t5_reference(state, ids, mask, heads, buckets=32, max_dist=20, eps=1e-6):
    """Wan's T5 encoder math (umT5: a relative-position bias per layer), written from its definition."""

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def bucket(rel):  # bidirectional T5 buckets: half for each sign, exact below max_exact, log-spaced above
        nb = buckets // 2
        out = (rel > 0).long() * nb
        rel = rel.abs()
        exact = nb // 2
        large = exact + (torch.log(rel.float() / exact) / math.log(max_dist / exact) * (nb - exact)).long()
        return out + torch.where(rel < exact, rel, large.clamp(max=nb - 1))

    b, seq = ids.shape
    x = F.embedding(ids, state["token_embedding.weight"])
    pos = torch.arange(seq)
    rel_buckets = bucket(pos[None, :] - pos[:, None])
    mask_bias = torch.zeros(b, 1, 1, seq).masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(layers):
        w = {k[len(f"blocks.{i}.") :]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = norm(x, w["norm1.weight"])
        q, k, v = (F.linear(h, w[f"attn.{n}.weight"]).view(b, seq, heads, -1) for n in "qkv")
        bias = w["pos_embedding.embedding.weight"][rel_buckets].permute(2, 0, 1)[None]
        attn = (torch.einsum("binc,bjnc->bnij", q, k) + bias + mask_bias).softmax(-1)  # T5: no 1/sqrt(d) scale
        x = x + F.linear(torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, seq, -1), w["attn.o.weight"])
        h = norm(x, w["norm2.weight"])
        gate = gelu_tanh(F.linear(h, w["ffn.gate.0.weight"]))
        x = x + F.linear(F.linear(h, w["ffn.fc1.weight"]) * gate, w["ffn.fc2.weight"])
    return norm(x, state["norm.weight"])


def test_umt5_wan_file_round_trip(tmp_path, tiny_umt5):
    wan = to_wan(tiny_umt5.state_dict())
    assert len(wan) == 2 + 10 * TINY["num_layers"]  # 242 for the 24-layer XXL file
    torch.save(wan, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    enc = UMT5TextEncoder.from_wan(
        tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", config=umt5_config(**TINY), dtype=torch.float32
    )
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 64, (2, 30), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 11:] = 0  # prompt 0 has 11 tokens, prompt 1 has 30 (distances beyond max_distance: log buckets)
    ids[0, 11:] = 0
    out = enc.encode_ids(ids, mask)
    with torch.no_grad():
        ref = tiny_umt5(input_ids=ids, attention_mask=mask).last_hidden_state
        wan_ref = wan_t5_reference(wan, ids, mask, heads=TINY["num_heads"])
    assert [o.shape for o in out] == [(11, 32), (30, 32)]  # trimmed to the real length
    assert torch.equal(out[0], ref[0, :11]) and torch.equal(out[1], ref[1])
    # And transformers with the renamed weights computes Wan's T5 (catches a swapped gate / fc1, a wrong bias).
    assert torch.allclose(out[0], wan_ref[0, :11], atol=1e-4, rtol=1e-4)
    assert torch.allclose(out[1], wan_ref[1], atol=1e-4, rtol=1e-4)
    assert enc.model.encoder.embed_tokens.weight is enc.model.shared.weight


def test_umt5_bf16_and_bad_files(tiny_umt5):
    wan = to_wan(tiny_umt5.state_dict())
    enc = UMT5TextEncoder.from_wan(wan, config=umt5_config(**TINY))  # default bf16, as Wan runs it
    assert enc.model.shared.weight.dtype == torch.bfloat16 and enc.dim == 32
    out = enc.encode_ids(torch.tensor([[5, 6, 1]]), torch.ones(1, 3, dtype=torch.long))
    assert out[0].dtype == torch.bfloat16 and torch.isfinite(out[0].float()).all()
    with pytest.raises(ValueError, match="not Wan umT5 encoder tensors.*clip"):
        wan_t5_to_hf({**wan, "clip.visual.proj": torch.zeros(1)})
    with pytest.raises(ValueError, match="do not fit the config"):
        UMT5TextEncoder.from_wan(wan, config=umt5_config(**{**TINY, "d_ff": 40}))
    with pytest.raises(RuntimeError, match="no tokenizer"):
        enc.encode(["a prompt"])


def build_tokenizer(folder):
    """A word-level tokenizer saved like google/umt5-xxl's folder: </s> appended, <pad> = 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["the", "a", "red", "green", "door", "key", "room", "dark", "opens", "corridor"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")
    fast.save_pretrained(folder)
    return folder


@pytest.fixture
def tokenizer_dir(tmp_path):
    return build_tokenizer(tmp_path / "google" / "umt5-xxl")


def test_umt5_tokenises_with_eos_trims_and_caches(tiny_umt5, tokenizer_dir):
    enc = UMT5TextEncoder.from_wan(
        to_wan(tiny_umt5.state_dict()), tokenizer_dir, config=umt5_config(**TINY), dtype=torch.float32
    )
    calls = []
    enc.model.register_forward_hook(lambda m, i, o: calls.append(1))
    prompts = ["the red door", "a  dark corridor\n opens", "the red door"]
    out = enc.encode(prompts)
    assert [o.shape[0] for o in out] == [4, 5, 4]  # words + EOS
    assert out[0] is out[2] and len(calls) == 1  # one batch, duplicates encoded once
    ids = torch.tensor([[3, 5, 7, 1, 0], [4, 10, 12, 11, 1]])
    direct = enc.encode_ids(ids, (ids != 0).long())  # second model call
    assert torch.allclose(out[0], direct[0], atol=1e-6) and torch.allclose(out[1], direct[1], atol=1e-6)
    again = enc.encode(["a dark corridor opens", "the red door"])  # cleaned text differs, features do not
    assert len(calls) == 3 and again[1] is out[0] and torch.allclose(again[0], out[1], atol=1e-6)
    feats, lengths = enc.encode_padded(["the red door", "a dark corridor opens"])
    assert feats.shape == (2, 5, 32) and lengths.tolist() == [4, 5] and torch.equal(feats[0, 4], torch.zeros(32))

    short = UMT5TextEncoder(enc.model, enc.tokenizer, max_length=4)
    assert short.encode(["the red green door key room"])[0].shape[0] == 4  # truncated, EOS kept


def test_umt5_default_max_length_is_512(tiny_umt5):
    assert UMT5TextEncoder(tiny_umt5).max_length == 512
    assert inspect.signature(UMT5TextEncoder.from_wan).parameters["max_length"].default == 512


def test_building_a_model_does_not_import_transformers():
    code = (
        "import sys, world_model.checkpoints as c\n"
        "m = c.build_model('lingbot-world-base-cam', device='meta')\n"
        "assert 'transformers' not in sys.modules, sorted(k for k in sys.modules if k.startswith('transformers'))\n"
        "print('ok', type(m).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok ExpertPair", proc.stderr[-2000:]


def test_clean_prompt():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"


# -- the small trainable encoder ------------------------------------------------------------------------------------
def test_small_encoder_shapes_masking_and_cache():
    torch.manual_seed(0)
    enc = SmallTextEncoder(SmallTextEncoderConfig(out_dim=48, dim=64, num_layers=2, num_heads=4, ffn_dim=128))
    assert sum(p.numel() for p in enc.parameters()) < 200_000
    out = enc.encode(["open the door", "é"])
    assert [o.shape for o in out] == [(14, 48), (3, 48)]  # UTF-8 bytes + EOS
    alone = enc.encode(["é"])[0]
    enc.clear_cache()
    assert torch.allclose(enc.encode(["é"])[0], alone) and torch.allclose(alone, out[1], atol=1e-5)  # pad is masked
    padded, lengths = enc(["open the door", "é"])
    assert padded.shape == (2, 14, 48) and lengths.tolist() == [14, 3]
    assert torch.equal(padded[1, 3:], torch.zeros(11, 48))
    long = enc.encode(["x" * 500])[0]
    assert long.shape[0] == enc.max_length
    features, lens = pad_features(out, length=20)
    assert features.shape == (2, 20, 48) and lens.tolist() == [14, 3]


def test_small_encoder_trains_and_cache_follows_the_weights():
    torch.manual_seed(0)
    enc = SmallTextEncoder(SmallTextEncoderConfig(out_dim=16, dim=32, num_layers=1, num_heads=2, ffn_dim=64))
    before = enc.encode(["go left"])[0].clone()
    assert enc.encode(["go left"])[0] is enc.encode(["go left"])[0]  # cached
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    target = torch.randn(8, 16)
    losses = []
    for _ in range(20):
        feats, _ = enc(["go left"])
        loss = (feats[0] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    after = enc.encode(["go left"])[0]
    assert not torch.allclose(after, before)  # the cache noticed the update
    with torch.no_grad():
        assert torch.allclose(after, enc(["go left"])[0][0], atol=1e-6)
