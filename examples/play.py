"""Play the generated world with keyboard and mouse: a thin wrapper over ``python -m lingbot_env``.

Usage::

    python examples/play.py --image start.png --prompt "a stone corridor"      # the default small model
    python examples/play.py --model /path/to/lingbot-world-release --device cuda --dtype bf16 --image start.png
    python examples/play.py --tiny                 # a tiny random world: try the window and controls, no model needed
    python examples/play.py --env real             # the real ViZDoom game with the same controls, to compare
    python examples/play.py --help                 # every option (recording, headless replay, action scripts)

``--model`` takes a downloaded LingBot-World release root (the folder holding ``lingbot_world_fast/``,
``Wan2.1_VAE.pth``, ``models_t5_umt5-xxl-enc-bf16.pth`` and ``google/umt5-xxl/``; ``--size 720x1280`` picks
another resolution than 480x832), a bundle folder or ``factory:package.module:function`` (imports the module
and calls the function: this runs that code).

W/A/S/D move; the mouse (grabbed: click in the window) or the arrow keys / I J K L look around; Esc releases the
mouse, Esc again or closing the window quits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lingbot_env.__main__ import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--tiny" in argv:
        # The tiny world's factory lives next to this file; it ships a gradient start image.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        argv = [a for a in argv if a != "--tiny"] + ["--model", "factory:train_ppo_in_world:tiny_random_world"]
    sys.exit(main(argv))
