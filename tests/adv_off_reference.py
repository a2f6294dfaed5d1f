"""What the decoder trainers produce on tiny runs with their default settings: the adversarial term off.

``tests/data/adv_off_golden.json`` holds these summaries as the trainers made them *before* the adversarial term
existed (written by this file against that code, see ``tests/data/README.md``); ``tests/test_adversarial.py``
checks that the trainers of today, the term off, still make them. It uses nothing that is newer than that code.

    PYTHONPATH=<checkout of the code before the term> python tests/adv_off_reference.py [out.json]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "adv_off_golden.json"


def _tensors(obj, path=""):
    """(path, tensor) of a nested checkpoint part, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}[{i}]")


def _part_summary(part) -> dict:
    """Float sums (compared with a tolerance: another CPU may round a last bit differently) and a SHA-256 of the
    bytes (bit-exact, same machine and build)."""
    digest, total, squares, count = hashlib.sha256(), 0.0, 0.0, 0
    for name, t in _tensors(part):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        if t.is_floating_point():
            total += t.double().sum().item()
            squares += t.double().pow(2).sum().item()
            count += t.numel()
    return {"sum": total, "sum_sq": squares, "numel": count, "sha256": digest.hexdigest()}


def _checkpoint_summary(path: Path, parts: tuple[str, ...]) -> dict:
    from distillation.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    rng = ckpt["rng"]
    return {
        "step": int(ckpt["step"]),
        "parts": sorted(k for k in ckpt if k not in ("step", "rng", "config")),
        **{name: _part_summary(ckpt[name]) for name in parts},
        # Torch's random stream after the run: exactly what was drawn, on any machine (numpy's global stream is
        # not seeded by the trainers, and they draw nothing from it).
        "rng_torch": hashlib.sha256(rng["torch"].numpy().tobytes()).hexdigest(),
    }


def _video(seed: int, b: int = 1, f: int = 5, h: int = 16, w: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1


def _stream(start: int):
    return (_video(100 + s) for s in itertools.count(start))


def light_decoder_run(out: Path) -> dict:
    """3 steps of the light decoder trainer (teacher + real frames), its defaults otherwise."""
    from distillation.train_light_decoder import TrainConfig, train_light_decoder
    from world_model.vae import LightDecoderConfig, VAEConfig, WanVAE

    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=8)).eval()
    student = LightDecoderConfig(widths=(16, 8, 8, 8), blocks_per_stage=2)
    cfg = TrainConfig(steps=3, lr=1e-3, warmup=2, ema=0.9, real_weight=0.5, log_every=1, progress=False)
    result = train_light_decoder(vae, _stream, out, student, cfg, val_videos=[_video(7, b=2)])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {
        "losses": result.losses,
        "log_keys": sorted({k for r in log if "loss" in r for k in r} - {"steps_per_s"}),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, float)},
        **_checkpoint_summary(out / "checkpoint.pt", ("student", "optimizer", "ema")),
    }


def _vae_source(split, start):
    """Smooth step-dependent clips [2, 3, 5, 32, 48] (as tests/test_training.py's ``small_source``)."""

    def batch(step):
        g = torch.Generator().manual_seed(step)
        low = torch.rand(2, 3, 5, 2, 3, generator=g) * 2 - 1
        return {"video": torch.nn.functional.interpolate(low, size=(5, 32, 48), mode="trilinear")}

    return (batch(s if split == "train" else 10_000 + s) for s in itertools.count(start))


def vae_run(out: Path) -> dict:
    """3 steps of the VAE trainer (dim 8, 32x48 clips), its defaults otherwise."""
    from distillation import train_vae

    cfg = train_vae.VAETrainConfig(
        out=str(out), dim=8, batch_size=2, warmup=1, lr=1e-3, log_every=1, device="cpu", replay_clips=0, max_steps=3
    )
    result = train_vae.train(cfg, _vae_source)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {
        "losses": [r["loss"] for r in log if "loss" in r],
        "log_keys": sorted({k for r in log if "loss" in r for k in r} - {"steps_per_s"}),
        "metrics": {k: v for k, v in result.items() if isinstance(v, float)},
        **_checkpoint_summary(out / "checkpoint.pt", ("model", "optimizer", "ema")),
    }


RUNS = {"light_decoder": light_decoder_run, "vae": vae_run}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    out = Path(argv[0]) if argv else GOLDEN
    summaries = {"torch": torch.__version__, "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in RUNS.items():
            summaries[name] = run(Path(tmp) / name)
    out.write_text(json.dumps(summaries, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
