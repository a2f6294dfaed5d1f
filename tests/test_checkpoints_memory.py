"""Peak host memory of loading an fp32 sharded checkpoint into bf16: below bf16 model + one shard + a margin.

Measured in a fresh subprocess from the kernel's peak RSS (VmHWM), reset just before loading."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from world_model.checkpoints import build_dit, save_checkpoint
from world_model.checkpoints.saving import plan_shards
from world_model.config import WanDiTConfig

MB = 2**20
MARGIN = 24 * MB  # allocator slack and page-table granularity; small next to the ~270 MB fp32 model

WORKER = r"""
import json, sys, torch
from world_model.checkpoints import build_dit, inspect_checkpoint, load_weights_

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out

info = inspect_checkpoint(sys.argv[1])  # headers only
model = build_dit(info.config, "meta", torch.bfloat16)
base = status()["VmRSS"]
try:  # reset the peak to the current RSS (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
start_peak = status()["VmHWM"]
report = load_weights_(model, info)
end = status()
print(json.dumps({
    "base": base, "peak": end["VmHWM"], "start_peak": start_peak, "reset": reset, "end": end["VmRSS"],
    "loaded": report.loaded, "bf16": sum(p.numel() * 2 for p in model.parameters()),
    "checksum": float(sum(p.detach().flatten()[:1024].float().sum() for p in model.parameters())),
}))
"""


def write_random_fp32(folder, cfg, num_shards):
    """An fp32 sharded checkpoint with random values, generated one shard at a time."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_dit(cfg, "meta", torch.float32).state_dict().items()}
    shards = plan_shards([(k, s.numel() * 4) for k, s in shapes.items()], num_shards=num_shards)
    g = torch.Generator().manual_seed(0)
    weight_map, sizes, checksum = {}, [], 0.0
    for i, names in enumerate(shards, start=1):
        fname = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors = {n: torch.randn(shapes[n], generator=g) * 0.02 for n in names}
        checksum += float(sum(t.flatten()[:1024].to(torch.bfloat16).float().sum() for t in tensors.values()))
        save_file(tensors, str(folder / fname))
        weight_map.update(dict.fromkeys(names, fname))
        sizes.append((folder / fname).stat().st_size)
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(cfg.to_official()))
    return sizes, checksum


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_rss_below_bf16_plus_one_shard(tmp_path):
    cfg = WanDiTConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=12, text_dim=1024, control_dim=6)
    sizes, checksum = write_random_fp32(tmp_path, cfg, num_shards=4)
    fp32 = sum(sizes)
    assert 200 * MB < fp32 < 400 * MB  # "a few hundred MB"

    out = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    growth = r["peak"] - r["base"]
    bound = r["bf16"] + max(sizes) + MARGIN
    print(
        f"fp32 checkpoint {fp32 / MB:.0f} MB in {len(sizes)} shards (largest {max(sizes) / MB:.0f} MB), "
        f"bf16 model {r['bf16'] / MB:.0f} MB: peak RSS growth {growth / MB:.0f} MB (bound {bound / MB:.0f} MB)"
    )
    assert r["loaded"] == len(build_dit(cfg, "meta").state_dict())
    assert r["checksum"] == pytest.approx(checksum, rel=1e-5, abs=1e-3)  # the values really were read
    assert growth >= r["bf16"]  # the measurement sees the model being allocated
    assert growth < bound
    assert growth < fp32  # never the fp32 model


def test_saving_holds_one_shard_at_a_time(tmp_path, monkeypatch):
    """The saver copies only one shard's tensors to the host before writing it."""
    import world_model.checkpoints.saving as saving

    cfg = WanDiTConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=4, text_dim=32, control_dim=6)
    model = build_dit(cfg, "cpu", torch.float32)
    written = []
    real = saving.save_file

    def spy(tensors, path, metadata=None):
        written.append(sum(t.numel() * 4 for t in tensors.values()))
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(saving, "save_file", spy)
    save_checkpoint(model, tmp_path / "x", num_shards=4, dtype=torch.float32)
    total = sum(p.numel() * 4 for p in model.parameters())
    assert len(written) == 4 and sum(written) == total and max(written) < total / 2
