"""MP4 writing through imageio's ffmpeg plugin, with a clear error where ``imageio-ffmpeg`` is missing.

Without that package imageio silently picks another plugin for ``.mp4`` (tifffile, say) and fails only at the
first frame with an unrelated error, after the work that produced the frames is done.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

MISSING = "writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg), which is not installed"


def mp4_available() -> bool:
    """Whether :func:`mp4_writer` can work here (``imageio-ffmpeg`` importable)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def mp4_writer(path: str | Path, fps: float, **kwargs: Any):
    """An imageio ffmpeg writer for ``path`` (``append_data(uint8 [H, W, 3])``, ``close()``); ``kwargs`` go to it."""
    if not mp4_available():
        raise RuntimeError(MISSING)
    import imageio.v2 as imageio

    return imageio.get_writer(Path(path), format="FFMPEG", fps=fps, **kwargs)
