"""``python -m lingbot_env``: play the generated world (or the real game) with keyboard and mouse, or replay an
action script headless into a video. ``python -m lingbot_env --help`` explains; the action-script format is in
:data:`SCRIPT_HELP`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lingbot_env.video import mp4_writer

SCRIPT_HELP = """\
action scripts (--actions FILE):
  JSON: a list of steps (or {"actions": [...]}); each entry is one of
    [W, A, S, D, yaw, pitch]                       one step, 6 numbers
    {"action": [W, A, S, D, yaw, pitch], "repeat": n}
    {"keys": "WD", "yaw": 0.5, "pitch": 0, "repeat": n}   keys: letters of W/A/S/D held (any case)
  CSV: one step per row "W,A,S,D,yaw,pitch[,repeat]"; a header row and lines starting with # are skipped.
  Keys are held when > 0.5; yaw > 0 turns right, pitch > 0 looks up, both in [-1, 1] of the full turn rate.
  The script is cycled (or cut) to --steps steps when --steps is given.

action presets (--actions-preset NAME): {presets}

controls (interactive): W/A/S/D move, mouse or arrow keys / I J K L look, click grabs the mouse,
  Esc releases it, Esc again or closing the window quits.

examples:
  python -m lingbot_env --image start.png --prompt "a stone corridor" --record play.mp4
  python -m lingbot_env --model /path/to/lingbot-world-release --device cuda --dtype bf16 --image start.png
      (a LingBot-World release root: lingbot_world_fast/, Wan2.1_VAE.pth, the umT5 .pth, google/umt5-xxl/;
      --size 720x1280 for the larger resolution, default 480x832)
  python -m lingbot_env --model doom-untrained --headless --actions-preset tour --steps 40 --record tour.mp4
  python -m lingbot_env --env real --record doom.mp4            # the real ViZDoom game, same controls
"""

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")

ACTION_PRESETS: dict[str, list[dict[str, Any]]] = {
    "forward": [{"keys": "W", "repeat": 32}],
    "turn": [{"yaw": 1.0, "repeat": 32}],
    "strafe": [{"keys": "A", "repeat": 8}, {"keys": "D", "repeat": 8}],
    "look-around": [
        {"yaw": 1.0, "repeat": 12},
        {"yaw": -1.0, "repeat": 12},
        {"pitch": 1.0, "repeat": 4},
        {"pitch": -1.0, "repeat": 8},
        {"pitch": 1.0, "repeat": 4},
    ],
    "tour": [
        {"keys": "W", "repeat": 8},
        {"keys": "W", "yaw": 0.5, "repeat": 8},
        {"keys": "W", "repeat": 8},
        {"keys": "W", "yaw": -0.5, "repeat": 8},
        {"keys": "WA", "repeat": 4},
        {"keys": "S", "repeat": 4},
    ],
}
RANDOM_PRESET = "random"  # a smooth random walk drawn with --seed (not a fixed table)


# ----------------------------------------------------------------------------------------- action scripts
def _entry_to_steps(entry: Any, where: str) -> list[list[float]]:
    if isinstance(entry, (list, tuple)):
        return [_six(entry, where)]
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected [W, A, S, D, yaw, pitch] or an object, got {entry!r:.60}")
    unknown = set(entry) - {"action", "keys", "yaw", "pitch", "repeat"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; use action, keys, yaw, pitch, repeat")
    repeat = entry.get("repeat", 1)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ValueError(f"{where}: repeat must be a positive integer, got {repeat!r}")
    if "action" in entry:
        if {"keys", "yaw", "pitch"} & set(entry):
            raise ValueError(f"{where}: give either 'action' or keys/yaw/pitch, not both")
        action = _six(entry["action"], where)
    else:
        keys = entry.get("keys", "")
        if not isinstance(keys, str) or set(keys.upper()) - set("WASD"):
            raise ValueError(f"{where}: keys must be a string of the letters W, A, S, D, got {keys!r}")
        held = keys.upper()
        action = [float(k in held) for k in "WASD"] + [float(entry.get("yaw", 0.0)), float(entry.get("pitch", 0.0))]
    return [action] * repeat


def _six(values: Any, where: str) -> list[float]:
    try:
        row = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: an action is 6 numbers [W, A, S, D, yaw, pitch], got {values!r:.60}") from e
    if len(row) != 6:
        raise ValueError(f"{where}: an action is 6 numbers [W, A, S, D, yaw, pitch], got {len(row)}")
    return row


def parse_action_script(data: Any, source: str = "script") -> np.ndarray:
    """A decoded JSON script (see :data:`SCRIPT_HELP`) -> actions ``float32 [T, 6]``."""
    if isinstance(data, dict) and set(data) == {"actions"}:
        data = data["actions"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{source}: an action script is a non-empty list of steps (or {{'actions': [...]}})")
    steps: list[list[float]] = []
    for i, entry in enumerate(data):
        steps += _entry_to_steps(entry, f"{source} entry {i}")
    return _checked(np.asarray(steps, dtype=np.float32), source)


def _checked(actions: np.ndarray, source: str) -> np.ndarray:
    from lingbot_env.actions import check_actions

    check_actions(actions, len(actions), "error")  # the script's author gets range errors now, not mid-video
    return actions


def load_action_script(path: str | Path) -> np.ndarray:
    """Read a ``.json`` or ``.csv`` action script -> ``float32 [T, 6]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"action script not found: {str(path)!r}")
    if path.suffix.lower() == ".csv":
        steps: list[list[float]] = []
        with path.open(newline="") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                cells = [c.strip() for c in row if c.strip()]
                if not cells or cells[0].startswith("#"):
                    continue
                try:
                    values = [float(c) for c in cells]
                except ValueError:
                    if not steps:  # a header row
                        continue
                    raise ValueError(f"{path}:{n}: not numbers: {row}") from None
                if len(values) not in (6, 7) or (len(values) == 7 and (values[6] < 1 or values[6] % 1)):
                    raise ValueError(f"{path}:{n}: a row is W,A,S,D,yaw,pitch[,repeat >= 1], got {row}")
                steps += [values[:6]] * (int(values[6]) if len(values) == 7 else 1)
        if not steps:
            raise ValueError(f"{path}: no actions in the file")
        return _checked(np.asarray(steps, dtype=np.float32), str(path))
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); use .csv for CSV scripts") from e
    return parse_action_script(data, str(path))


def preset_actions(name: str, seed: int = 0, steps: int = 64) -> np.ndarray:
    """A named preset -> ``float32 [T, 6]``; ``"random"`` is a smooth random walk of ``steps`` steps."""
    if name == RANDOM_PRESET:
        rng = np.random.default_rng(seed)
        out = np.zeros((steps, 6), dtype=np.float32)
        yaw = 0.0
        keys = np.array([1.0, 0.0, 0.0, 0.0])
        for t in range(steps):
            if t % 8 == 0:  # change keys every 8 steps; mostly walk forward
                keys = (rng.random(4) < [0.7, 0.15, 0.1, 0.15]).astype(np.float64)
            yaw = float(np.clip(0.8 * yaw + rng.normal(0, 0.4), -1, 1))
            out[t, :4], out[t, 4] = keys, yaw
        return out
    if name not in ACTION_PRESETS:
        raise ValueError(f"unknown action preset {name!r}; presets: {[*ACTION_PRESETS, RANDOM_PRESET]}")
    return parse_action_script(ACTION_PRESETS[name], f"preset {name!r}")


def fit_length(actions: np.ndarray, steps: int | None) -> np.ndarray:
    """Cycle or cut ``actions`` [T, 6] to ``steps`` rows (None: unchanged)."""
    if steps is None:
        return actions
    return actions[np.arange(steps) % len(actions)]


# ----------------------------------------------------------------------------------------- video
class VideoRecorder:
    """Appends ``uint8 [F, H, W, 3]`` chunks to a video file (imageio + ffmpeg, H.264 for .mp4)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"--record must be a video file ({', '.join(VIDEO_SUFFIXES)}), got {str(self.path)!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # macro_block_size=2: encoders need even sizes only; the default 16 would rescale e.g. 160x120 frames.
        self.writer = mp4_writer(self.path, fps, macro_block_size=2, ffmpeg_log_level="error")
        self.frames = 0

    def __call__(self, frames: np.ndarray) -> None:
        for frame in np.asarray(frames).reshape(-1, *np.shape(frames)[-3:]):
            self.writer.append_data(frame)
            self.frames += 1

    def close(self) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lingbot_env",
        description="Play LingBot-World (a generated, real-time video world) with keyboard and mouse, or replay an "
        "action script headless and write the video. --env real plays the real ViZDoom game with the same controls.",
        epilog=SCRIPT_HELP.replace("{presets}", ", ".join([*ACTION_PRESETS, RANDOM_PRESET])),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--env",
        choices=("world", "real"),
        default="world",
        help="world: the generated world (default); real: the ViZDoom game ViZDoomWASD-v0",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a model folder (a world bundle, or a LingBot-World release root holding lingbot_world_fast/), "
        "'doom-untrained' (random weights, runs offline), a preset name with shipped weights, or "
        "factory:package.module:function (imports that module and calls the function: this runs its code) "
        "(default: the project's small Doom model)",
    )
    p.add_argument(
        "--image",
        default=None,
        help="start image file (scaled to cover the model's size, centre-cropped; "
        "default: the model's shipped start frame)",
    )
    p.add_argument("--prompt", default=None, help="text prompt (default: the model's default prompt)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--size", default=None, metavar="HxW", help="resolution for a LingBot release root, e.g. 720x1280")
    p.add_argument("--dtype", default=None, help="bfloat16 | float16 | float32 (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="episode seed: same seed + same actions = same video")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch CPU threads: a number, 'auto' (default: half the cores, at most 4, unless OMP_NUM_THREADS is "
        "set; one thread per core runs up to 30x slower beside another busy process) or 'torch' (torch's choice)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps to run (interactive: until quit; headless: the script's length, cycled/cut to this)",
    )
    p.add_argument("--max-episode-steps", type=int, default=None, help="reset the episode after this many steps")
    p.add_argument("--scale", type=int, default=None, help="integer window zoom (default: fit about 1280x800)")
    p.add_argument("--record", default=None, metavar="OUT.mp4", help="write every frame to this video file")
    p.add_argument("--headless", action="store_true", help="no window: replay --actions/--actions-preset")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--actions", default=None, metavar="SCRIPT", help="action script (.json or .csv), see below")
    group.add_argument("--actions-preset", default=None, metavar="NAME", help="a built-in action script, see below")
    p.add_argument("--map", default=None, help="--env real: map to play (default MAP01)")
    return p


def make_env(args: argparse.Namespace, render_mode: str | None) -> Any:
    """The env the arguments ask for (the world loads here, which is the slow part)."""
    if args.env == "real":
        import gymnasium as gym

        import lingbot_env  # noqa: F401  (registers the envs)

        kwargs: dict[str, Any] = {"labels": False, "max_steps": args.max_episode_steps or 0, "seed": args.seed}
        if args.map:
            kwargs["map"] = args.map
        return gym.make("ViZDoomWASD-v0", render_mode="rgb_array", disable_env_checker=True, **kwargs)
    from lingbot_env.world_env import LingBotWorldEnv

    return LingBotWorldEnv(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        render_mode=render_mode,
        max_episode_steps=args.max_episode_steps,
        action_clip="clip",
        image=args.image,
        prompt=args.prompt,
        seed=args.seed,
        window_scale=args.scale,
        model_kwargs={"size": _size(args.size)} if args.size else None,
        num_threads=None,  # main() applied --threads already
    )


def no_display_reason() -> str | None:
    """Why no window can open here (None: one can). SDL falls back to its offscreen driver without a display, so
    the interactive mode would run with nothing on screen."""
    import os

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    try:
        pygame.display.init()
        driver = pygame.display.get_driver()
    except pygame.error as e:
        return f"no display can be opened ({e})"
    if driver in ("offscreen", "dummy"):
        pygame.display.quit()
        hint = "DISPLAY / WAYLAND_DISPLAY is not set" if not os.environ.get("SDL_VIDEODRIVER") else "SDL_VIDEODRIVER="
        hint += os.environ.get("SDL_VIDEODRIVER", "")
        return f"SDL found no display (driver {driver!r}: {hint})"
    return None


def cli_message(error: Exception, args: argparse.Namespace) -> str:
    """The error in the CLI's words (``--model``, not ``model=``)."""
    from world_model.bundle import WorldNotAvailableError

    if isinstance(error, WorldNotAvailableError) and args.model is None:
        return (
            "the embedded default world (the project's small ViZDoom model) is not trained and shipped yet. Run "
            "with --model doom-untrained (its architecture with random weights: runs offline, shows noise), "
            "--model <world bundle folder> or --model <LingBot-World release root>"
        )
    return str(error).replace("model=", "--model ").replace("device=", "--device ")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be HxW, e.g. 480x832, got {text!r}") from None
    return h, w


def run_headless(env: Any, actions: np.ndarray, seed: int, on_frames: Callable[[np.ndarray], None] | None) -> dict:
    """Replay ``actions`` [T, 6]; returns throughput numbers."""
    from tqdm import tqdm

    _, info = env.reset(seed=seed)
    if on_frames is not None:
        on_frames(info["frames"])
    frames, step_ms = 0, []
    t0 = time.perf_counter()
    with tqdm(actions, desc="rendering", unit="step", file=sys.stderr) as bar:
        for action in bar:
            t = time.perf_counter()
            _, _, terminated, truncated, info = env.step(action)
            step_ms.append((time.perf_counter() - t) * 1e3)
            frames += len(info["frames"])
            if on_frames is not None:
                on_frames(info["frames"])
            bar.set_postfix(step_ms=f"{step_ms[-1]:.0f}")
            if terminated or truncated:
                _, info = env.reset()
                if on_frames is not None:
                    on_frames(info["frames"])
    seconds = time.perf_counter() - t0
    return {
        "steps": len(actions),
        "frames": frames,
        "seconds": seconds,
        "steps_per_s": len(actions) / seconds,
        "frames_per_s": frames / seconds,
        "median_step_ms": float(np.median(step_ms)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.env == "real" and (args.model or args.image or args.prompt or args.dtype or args.size):
        parser.error("--model/--image/--prompt/--dtype/--size are for the generated world, not --env real")
    if args.env == "world" and args.map:
        parser.error("--map is for --env real")
    if args.headless and not (args.actions or args.actions_preset):
        parser.error("--headless needs --actions SCRIPT or --actions-preset NAME")
    if not args.headless and (args.actions or args.actions_preset):
        parser.error("--actions/--actions-preset replay headless: add --headless")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.record and Path(args.record).suffix.lower() not in VIDEO_SUFFIXES:
        parser.error(f"--record must end in one of {', '.join(VIDEO_SUFFIXES)}")
    actions = None
    if args.headless:
        try:
            if args.actions:
                actions = fit_length(load_action_script(args.actions), args.steps)
            else:
                actions = fit_length(preset_actions(args.actions_preset, args.seed, args.steps or 64), args.steps)
        except (OSError, ValueError) as e:
            parser.error(str(e))
        if not args.record:
            print("note: --headless without --record writes no video; printing throughput only", file=sys.stderr)

    threads: int | str | None = {"auto": "auto", "torch": None}.get(args.threads, args.threads)
    if isinstance(threads, str) and threads != "auto":
        try:
            threads = int(threads)
        except ValueError:
            parser.error(f"--threads must be a number, 'auto' or 'torch', got {args.threads!r}")
        if threads < 1:
            parser.error("--threads must be >= 1")
    if not args.headless:
        problem = no_display_reason()
        if problem:
            print(
                f"error: the interactive mode needs a window, and {problem}. Replay an action script instead: "
                "--headless --actions-preset tour --record out.mp4",
                file=sys.stderr,
            )
            return 2
    from lingbot_env.resolve import apply_num_threads

    apply_num_threads(threads, "cpu" if args.env == "real" else args.device)
    from tqdm import tqdm

    with tqdm(
        total=1,
        desc="loading " + ("ViZDoom" if args.env == "real" else args.model or "default model"),
        unit="model",
        file=sys.stderr,
        bar_format="{desc}: {elapsed}{postfix}",
    ) as bar:
        try:
            env = make_env(args, None if args.headless or args.env == "real" else "human")
        except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
            bar.close()
            print(f"error: {cli_message(e, args)}", file=sys.stderr)
            return 2
        bar.update()

    fps = env.metadata.get("video_fps", env.metadata.get("render_fps", 16.0))
    recorder = VideoRecorder(args.record, fps) if args.record else None
    from world_model.world import NonFiniteError

    try:
        if args.headless:
            stats = run_headless(env, actions, args.seed, recorder)
            print(
                f"{stats['steps']} steps, {stats['frames']} frames in {stats['seconds']:.1f} s: "
                f"{stats['steps_per_s']:.2f} steps/s, {stats['frames_per_s']:.1f} frames/s "
                f"(median step {stats['median_step_ms']:.0f} ms)"
            )
        else:
            import pygame

            from lingbot_env.human import play

            try:
                # The env seeds its first reset (seed=--seed); later episodes draw fresh seeds.
                steps = play(env, max_steps=args.steps, on_frames=recorder, scale=args.scale)
            except pygame.error as e:
                print(f"error: cannot open a window ({e}); use --headless --actions ...", file=sys.stderr)
                return 2
            print(f"played {steps} steps")
    except NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    finally:
        if recorder is not None:
            recorder.close()
            print(f"wrote {recorder.frames} frames to {recorder.path}")
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
