"""No code runs from a data file, and corrupt weights never load or play silently (issue 24).

* A malicious pickle (its ``__reduce__`` writes a marker file) in every place the project reads a ``.pt`` / ``.pth``
  / checkpoint file is refused with an error naming the file, and the marker stays absent.
* A checkpoint of the old ``torch.save`` format, converted once, resumes bit-exactly; the committed files under
  ``checkpoints/`` are converted and load.
* Flipped bytes in a state file, a shard or a bundle file are refused by name; a world with NaN weights raises on
  its first step instead of returning a black frame.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_dit, tiny_world

from distillation import train_vae
from distillation.training.checkpoint import CheckpointFormatError, load_checkpoint, restore_state
from world_model.checkpoints import CheckpointError, load_dit, save_checkpoint
from world_model.safe_files import (
    SHA256SUMS,
    IntegrityError,
    StateFileError,
    UnsafeFileError,
    load_state_file,
    save_state_file,
    state_file_kind,
)
from world_model.vae import (
    LightDecoder,
    LightDecoderConfig,
    light_decoder_fingerprint,
    load_light_decoder,
    save_light_decoder,
)

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this writes ``marker``: what a hostile checkpoint would do (run code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_hostile(path: Path, marker: Path, how: str) -> Path:
    """``torch.save`` (zip) or plain ``pickle.dump`` of a dict that looks like a checkpoint, holding the payload."""
    blob = {"config": {}, "state_dict": {}, "step": 1, "rng": {}, "format": "x", "payload": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch":
        torch.save(blob, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(blob, f, protocol=4)
    return path


def _train_vae_resume(path: Path):
    cfg = train_vae.VAETrainConfig(out=str(path.parent), dim=8, batch_size=2, max_steps=1, device="cpu")
    train_vae.train(cfg, lambda split, start: iter(()))


def _train_light_decoder_resume(path: Path):
    from test_vae import random_vae

    from distillation.train_light_decoder import TrainConfig, train_light_decoder

    train_light_decoder(random_vae(), lambda start: iter(()), path.parent, None, TrainConfig(steps=1, progress=False))


def _umt5(path: Path):
    pytest.importorskip("transformers")
    from world_model.checkpoints.text_encoders import UMT5TextEncoder

    UMT5TextEncoder.from_wan(path)


def _probe(path: Path):
    from distillation.evaluation.probe import Probe

    Probe.load(path)


def _vae(path: Path):
    from world_model.vae import load_wan_vae

    load_wan_vae(path)


def _convert(path: Path):
    from tools.convert_legacy_checkpoint import convert

    convert(path)


def _dit(path: Path):
    load_dit(path)


def _restore(path: Path):
    m = torch.nn.Linear(2, 2)
    restore_state(path, {"model": m}, {}, ())


# Every reader of a .pt / .pth / checkpoint file in the project, with the file name it reads.
READERS = {
    "load_checkpoint": (load_checkpoint, "run/checkpoint.pt"),
    "restore_state": (_restore, "run/checkpoint.pt"),
    "train_vae resume": (_train_vae_resume, "run/checkpoint.pt"),
    "train_light_decoder resume": (_train_light_decoder_resume, "run/checkpoint.pt"),
    "load_light_decoder": (load_light_decoder, "light/light_decoder.pt"),
    "light_decoder_fingerprint": (light_decoder_fingerprint, "light/light_decoder.pt"),
    "Probe.load": (_probe, "probe/probe.pt"),
    "load_wan_vae (.pth)": (_vae, "Wan2.1_VAE.pth"),
    "umT5 from_wan (.pth)": (_umt5, "models_t5_umt5-xxl-enc-bf16.pth"),
    "load_dit": (_dit, "dit/model.pt"),
    "convert_legacy_checkpoint": (_convert, "old/checkpoint.pt"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch", "pickle"])
@pytest.mark.parametrize("reader", list(READERS))
def test_a_hostile_pickle_never_runs_and_is_refused_by_name(tmp_path, reader, how):
    fn, name = READERS[reader]
    marker = tmp_path / "marker"
    path = write_hostile(tmp_path / name, marker, how)
    with pytest.raises((UnsafeFileError, StateFileError, CheckpointError)) as e:
        fn(path)
    assert not marker.exists(), f"{reader} ran code from {path}"
    assert str(path) in str(e.value) or path.name in str(e.value)
    message = str(e.value).lower()
    assert any(w in message for w in ("pickle", "refused", "safetensors", "not a")), message


def test_a_refused_pickle_names_the_conversion_command(tmp_path):
    path = write_hostile(tmp_path / "checkpoint.pt", tmp_path / "marker", "torch")
    with pytest.raises(UnsafeFileError, match=r"checkpoint\.pt is a torch\.save \(pickle\) file.*convert_legacy"):
        load_checkpoint(path)
    with pytest.raises(UnsafeFileError, match=r"refused: .* imports \['builtins\.exec'\]"):
        from tools.convert_legacy_checkpoint import convert

        convert(path)
    assert not (tmp_path / "marker").exists()


# -- state files ---------------------------------------------------------------------------------------------------
def test_state_files_round_trip_bit_exactly_and_refuse_damage(tmp_path):
    state = {
        "w": torch.randn(3, 4).to(torch.bfloat16),
        "nan": torch.tensor([float("nan"), -0.0, float("inf")]),
        "empty": torch.zeros(0, 2),
        "np": np.random.RandomState(0).get_state(),
        "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.99), "params": [0]}]},
        "misc": [None, True, 1.5, "s", Path("a/b"), torch.float16],
    }
    path = save_state_file(tmp_path / "s.pt", state, "test")
    back = load_state_file(path, "test")
    from tools.convert_legacy_checkpoint import same

    same(state, back)
    assert state_file_kind(path) == "test"
    with pytest.raises(StateFileError, match=r"s\.pt: a 'test' state file, not a light decoder"):
        load_light_decoder(path)
    for offset in (-5, 20):  # in the tensor data, and inside the JSON header
        damaged = tmp_path / f"damaged{offset}.pt"
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        damaged.write_bytes(bytes(data))
        with pytest.raises(StateFileError, match=rf"damaged{offset}\.pt"):
            load_state_file(damaged, "test")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StateFileError, match=r"truncated\.pt: not a state file"):
        load_state_file(truncated)


def test_training_checkpoint_errors_name_the_file_and_the_problem(tmp_path):
    m = torch.nn.Linear(2, 2)
    good = tmp_path / "checkpoint.pt"
    from distillation.training.checkpoint import save_state

    save_state(good, 3, {"dim": 8}, {"model": m})
    assert restore_state(good, {"model": torch.nn.Linear(2, 2)}, {"dim": 8}, ("dim",)) == 3
    with pytest.raises(CheckpointFormatError, match=r"checkpoint\.pt: this training checkpoint has no \['ema'\]"):
        restore_state(good, {"model": m, "ema": m}, {"dim": 8}, ())
    with pytest.raises(CheckpointFormatError, match=r"checkpoint\.pt: the checkpoint's 'model' does not fit"):
        restore_state(good, {"model": torch.nn.Linear(3, 2)}, {"dim": 8}, ())
    with pytest.raises(ValueError, match=r"checkpoint\.pt: the checkpoint was made with different settings"):
        restore_state(good, {"model": m}, {"dim": 16}, ("dim",))
    light = tmp_path / "light_decoder.pt"
    save_light_decoder(LightDecoder(LightDecoderConfig(widths=(8, 8, 8, 8), blocks_per_stage=1)), light)
    with pytest.raises(CheckpointFormatError, match=r"light_decoder\.pt: a 'light-decoder' state file, not a train"):
        load_checkpoint(light)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointFormatError, match=r"junk\.pt: not a training checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    data = bytearray(good.read_bytes())
    data[-2] ^= 0x10
    good.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match=r"checkpoint\.pt: this training checkpoint is corrupt"):
        load_checkpoint(good)


# -- old checkpoints: converted once, bit-exact -------------------------------------------------------------------
def small_source(split, start):
    def batch(step):
        g = torch.Generator().manual_seed(step)
        low = torch.rand(2, 3, 5, 2, 3, generator=g) * 2 - 1
        video = torch.nn.functional.interpolate(low, size=(5, 32, 48), mode="trilinear")
        return {"video": video, "actions": torch.rand(2, 1, 6, generator=g), "captions": ["a", "b"]}

    return (batch(s if split == "train" else 10_000 + s) for s in itertools.count(start))


def vae_cfg(out, **kw):
    base = dict(out=str(out), dim=8, batch_size=2, warmup=1, lr=1e-3, log_every=1, device="cpu", replay_clips=0)
    return train_vae.VAETrainConfig(**{**base, **kw})


def test_resume_from_a_converted_legacy_checkpoint_is_bit_exact(tmp_path):
    from tools.convert_legacy_checkpoint import convert

    train_vae.train(vae_cfg(tmp_path / "straight", max_steps=4), small_source)
    train_vae.train(vae_cfg(tmp_path / "old", max_steps=2), small_source)
    ckpt = tmp_path / "old" / "checkpoint.pt"
    torch.save(load_checkpoint(ckpt), ckpt)  # what the trainers wrote before: torch.save of the same dict
    with pytest.raises(UnsafeFileError, match="convert_legacy_checkpoint"):
        train_vae.train(vae_cfg(tmp_path / "old", max_steps=4), small_source)
    assert convert(ckpt) == "converted training-checkpoint" and convert(ckpt) == "already converted"
    train_vae.train(vae_cfg(tmp_path / "old", max_steps=4), small_source)
    a, b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(ckpt)
    assert a["step"] == b["step"] == 4
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


def test_a_converted_light_decoder_is_bit_exact(tmp_path):
    from tools.convert_legacy_checkpoint import main

    torch.manual_seed(0)
    model = LightDecoder(LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=1))
    path = tmp_path / "light_decoder.pt"
    config = dataclasses.asdict(model.config)
    torch.save({"config": config, "state_dict": model.state_dict(), "vae_fingerprint": "ab" * 8}, path)
    with pytest.raises(UnsafeFileError, match=r"light_decoder\.pt is a torch\.save \(pickle\) file"):
        load_light_decoder(path)
    assert main([str(path)]) == 0
    loaded = load_light_decoder(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert light_decoder_fingerprint(path) == "ab" * 8


def test_the_committed_checkpoints_are_converted_and_load():
    from distillation.evaluation.probe import Probe

    probe = REPO / "checkpoints/probe/probe.pt"
    assert state_file_kind(probe) == "lingbot-inverse-dynamics-probe"
    assert Probe.load(probe).frame_size == (128, 96)
    # The light decoder's training state lives in the git history (tools/training_states.py); when restored here
    # it must be the converted (pickle-free) format too.
    light = REPO / "checkpoints/doom_light/light_decoder.pt"
    if light.is_file():
        assert state_file_kind(light) == "light-decoder"
        assert load_light_decoder(light).config.widths == (128, 64, 48, 24)


# -- integrity of shards and bundles --------------------------------------------------------------------------------
def _flip_data_bytes(path: Path, value: int | None = None) -> None:
    """Change 4 bytes in the middle of the tensor data (not the header): XOR, or set them to ``value``."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    mid = header + (len(data) - header) // 2
    mid -= (mid - header) % 4
    for i in range(mid, mid + 4):
        data[i] = value if value is not None else data[i] ^ 0x5A
    path.write_bytes(bytes(data))


def test_a_shard_with_flipped_data_bytes_is_refused_by_name(tmp_path):
    src = tiny_dit(6, seed=1)
    total = sum(t.numel() * 4 for t in src.state_dict().values())
    saved = save_checkpoint(src, tmp_path / "dit", max_shard_size=total // 2, dtype=torch.float32)
    assert (tmp_path / "dit" / SHA256SUMS).is_file()
    assert load_dit(tmp_path / "dit", dtype=torch.float32) is not None
    victim = saved.files[1]
    _flip_data_bytes(victim)  # a finite value changes: only the digest can tell
    with pytest.raises(CheckpointError, match=rf"{victim.name}: this checkpoint file is corrupt .*SHA-256"):
        load_dit(tmp_path / "dit", dtype=torch.float32)
    # Without digests (an official release) the same damage as NaN is caught by the finite check, named.
    (tmp_path / "dit" / SHA256SUMS).unlink()
    _flip_data_bytes(victim, 0xFF)  # 0xFFFFFFFF is a NaN in fp32
    with pytest.raises(CheckpointError, match=rf"{victim.name}: tensor '.+' holds NaN or inf"):
        load_dit(tmp_path / "dit", dtype=torch.float32)
    with pytest.raises(CheckpointError, match="records no digest"):
        load_dit(tmp_path / "dit", dtype=torch.float32, integrity="sha256")
    nan = load_dit(tmp_path / "dit", dtype=torch.float32, integrity="none")  # asked for: loads as it is
    assert not all(torch.isfinite(p).all() for p in nan.parameters())


def test_a_bundle_records_and_checks_every_file(tmp_path):
    from world_model.bundle import load_world, save_world

    folder = save_world(tmp_path / "w", tiny_world(1), dtype=torch.float32)
    digests = json.loads((folder / "world.json").read_text())["sha256"]
    assert {"light_decoder.safetensors", "vae_encoder.json", "dit/config.json"} <= set(digests)
    load_world(folder)
    _flip_data_bytes(folder / "light_decoder.safetensors")
    with pytest.raises(IntegrityError, match=r"light_decoder\.safetensors: this world bundle file is corrupt"):
        load_world(folder)


def test_a_world_with_nan_weights_raises_on_the_first_step():
    from lingbot_env.vector_env import LingBotWorldVectorEnv
    from lingbot_env.world_env import LingBotWorldEnv
    from world_model.world import NonFiniteError

    for n, make in ((1, lambda w: LingBotWorldEnv(model=w)), (2, lambda w: LingBotWorldVectorEnv(2, model=w))):
        world = tiny_world(n, start_image=True)
        with torch.no_grad():
            for p in world.dit.parameters():
                p.fill_(float("nan"))
        env = make(world)
        env.reset(seed=0)
        action = np.zeros((n, 6) if n > 1 else 6, np.float32)
        with pytest.raises(NonFiniteError, match=r"^step 1.*NaN or inf in the DiT's latents"):
            env.step(action)
        env.close()
    world = tiny_world(1, start_image=True)
    with torch.no_grad():
        for p in world.decoder.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"^reset: NaN or inf in the decoded start frame"):
        LingBotWorldEnv(model=world).reset(seed=0)


def test_a_state_file_replaced_while_it_is_read_loads_as_one_file(tmp_path, monkeypatch):
    """A run replaces its checkpoint (atomically) every N steps; a reader at that moment must get one whole file,
    never the digest of one and the tensors of the other (a kill test once read exactly that and failed)."""
    path = tmp_path / "state.safetensors"
    save_state_file(path, {"step": 1, "w": torch.zeros(64)}, "training-checkpoint")
    newer = tmp_path / "newer.safetensors"
    save_state_file(newer, {"step": 2, "w": torch.ones(64)}, "training-checkpoint")
    read = Path.read_bytes

    def read_then_replace(self):  # the writer's rename lands right after the reader's first look at the file
        data = read(self)
        if self == path and newer.exists():
            os.replace(newer, path)
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_replace)
    state = load_state_file(path, "training-checkpoint")
    assert state["step"] == 1 and torch.equal(state["w"], torch.zeros(64))
    assert load_state_file(path, "training-checkpoint")["step"] == 2  # the next read sees the new file whole
