"""Start images and prompts of the generated-world envs: any image form -> ``uint8 [H, W, 3]`` at the model's size."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ImageArg = np.ndarray | str | os.PathLike | Any  # Any: a PIL image (PIL is imported only when used)


def load_image(image: ImageArg, what: str = "image") -> np.ndarray:
    """A numpy ``uint8 [H, W, 3]`` array, a PIL image (any mode, converted to RGB) or an image file path ->
    ``uint8 [H, W, 3]``. Anything else raises ``TypeError``/``ValueError`` saying how to fix it."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {str(path)!r}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return np.array(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"cannot read {what} file {str(path)!r} as an image: {e}") from e
    if type(image).__module__.startswith("PIL."):
        return np.array(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{what} must be a numpy uint8 array [H, W, 3], a PIL image or a file path; got {type(image).__name__}"
            + (" (did you mean reset(seed=...)?)" if isinstance(image, (int, np.integer)) else "")
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{what} must have dtype uint8 (0..255), got {image.dtype}; for floats in [0, 1] use "
            "(img * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        raise ValueError(
            f"{what} is grayscale {image.shape}; give [H, W, 3] RGB, e.g. np.repeat(img[..., None], 3, -1)"
        )
    if image.ndim != 3:
        raise ValueError(f"{what} must be [H, W, 3] (one RGB image), got shape {image.shape}")
    if image.shape[2] != 3:
        hint = " (channels-first? use img.transpose(1, 2, 0))" if image.shape[0] == 3 else ""
        hint = " (RGBA? drop alpha with img[..., :3])" if image.shape[2] == 4 else hint
        raise ValueError(f"{what} must have 3 channels (RGB) last: [H, W, 3], got shape {image.shape}{hint}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover, then center crop: ``uint8 [h, w, 3]`` -> ``uint8 [height, width, 3]``.

    The image is resized (PIL bicubic, antialiased when shrinking) by ``s = max(height / h, width / w)`` to
    ``(max(height, round(h * s)), max(width, round(w * s)))``, so it covers the target with its aspect ratio kept;
    then the centre ``height x width`` window is cut out (offsets rounded down). An image already at the target
    size is returned unchanged (copied).
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.array(image, copy=True)
    from PIL import Image

    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BICUBIC))
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.array(resized[top : top + height, left : left + width], copy=True)


def prepare_image(image: ImageArg, height: int, width: int, what: str = "image") -> np.ndarray:
    """:func:`load_image` then :func:`fit_image`: the start observation ``uint8 [height, width, 3]``."""
    return fit_image(load_image(image, what), height, width)


def check_prompt(prompt: Any, what: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"{what} must be a str, got {type(prompt).__name__}: {prompt!r:.60}")
    return prompt
