"""Checkpoints, presets and text encoders: point the project at a downloaded LingBot-World / Wan folder and get a
working model, in bf16, within memory.

    from world_model.checkpoints import build_model, load_model
    model = build_model("lingbot-world-base-cam", device="meta")     # inspect a full-size pair, allocates nothing
    pair = load_model("/data/lingbot-world-base-cam", "lingbot-world-base-cam", device="cuda")
    fast = load_model("/data/lingbot-world-fast")                     # shape and control type read from tensors
    release = load_release("/data/lingbot-world-base-cam", "lingbot-world-base-cam", device="cuda")  # + VAE, umT5
    write_random_release("/tmp/fake-fast", "lingbot-world-fast")      # random weights, official layout (benchmarks)

Text encoders (``text_encoders``) import transformers only when the umT5 encoder is built.
"""

from world_model.checkpoints.build import ExpertPair, build_dit, build_model, init_weights_
from world_model.checkpoints.keys import NamingInfo, detect_naming, diffusers_to_official, infer_config
from world_model.checkpoints.loading import (
    CheckpointError,
    CheckpointInfo,
    CheckpointMismatchError,
    LoadReport,
    find_weights,
    inspect_checkpoint,
    load_dit,
    load_model,
    load_weights_,
)
from world_model.checkpoints.presets import (
    ExpertSpec,
    Preset,
    SamplingDefaults,
    get_preset,
    list_presets,
    register_preset,
    unregister_preset,
)
from world_model.checkpoints.random_release import ensure_random_release, write_random_release
from world_model.checkpoints.release import Release, load_release, load_text_encoder, load_vae
from world_model.checkpoints.saving import DIFFUSERS_LAYOUT, FAST_LAYOUT, ShardLayout, save_checkpoint, save_model
from world_model.checkpoints.text_encoders import (
    SmallTextEncoder,
    SmallTextEncoderConfig,
    TextEncoder,
    UMT5TextEncoder,
    build_text_encoder,
)

__all__ = [
    "DIFFUSERS_LAYOUT",
    "FAST_LAYOUT",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "ExpertPair",
    "ExpertSpec",
    "LoadReport",
    "NamingInfo",
    "Preset",
    "Release",
    "SamplingDefaults",
    "ShardLayout",
    "SmallTextEncoder",
    "SmallTextEncoderConfig",
    "TextEncoder",
    "UMT5TextEncoder",
    "build_dit",
    "build_model",
    "build_text_encoder",
    "detect_naming",
    "diffusers_to_official",
    "ensure_random_release",
    "find_weights",
    "get_preset",
    "infer_config",
    "init_weights_",
    "inspect_checkpoint",
    "list_presets",
    "load_dit",
    "load_model",
    "load_release",
    "load_text_encoder",
    "load_vae",
    "load_weights_",
    "register_preset",
    "save_checkpoint",
    "save_model",
    "unregister_preset",
    "write_random_release",
]
