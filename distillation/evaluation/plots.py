"""Line charts drawn with Pillow (matplotlib is not a dependency): metric vs horizon, metric vs rollout step.

A chart has a title, axes with round-number ticks, one line per :class:`Series` (NaN breaks a line), an optional
shaded band (e.g. +-1 std) and a legend. :func:`line_plot` writes one chart, :func:`panel_plot` a column of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BG, FG, GRID = (255, 255, 255), (25, 25, 25), (225, 225, 225)
PALETTE = ((31, 119, 180), (230, 120, 20), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


@dataclass
class Series:
    """One line: ``y`` [N] against the chart's ``x`` [N]; ``band`` [N] draws ``y +- band`` shaded."""

    label: str
    y: Sequence[float] | np.ndarray
    colour: tuple[int, int, int] | None = None
    band: Sequence[float] | np.ndarray | None = None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round-number ticks (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0 or (abs(v) >= 1 and abs(v - round(v)) < 1e-9):
        return f"{v:.0f}"
    return f"{v:.3g}"


def _light(c: tuple[int, int, int], amount: float = 0.75) -> tuple[int, int, int]:
    return tuple(int(v + (255 - v) * amount) for v in c)  # type: ignore[return-value]


def draw_chart(
    img: Image.Image,
    box: tuple[int, int, int, int],
    x: Sequence[float] | np.ndarray,
    series: Sequence[Series],
    title: str,
    xlabel: str,
    ylabel: str,
    y_range: tuple[float, float] | None = None,
) -> None:
    """Draw a chart into ``box`` = (left, top, right, bottom) of ``img``."""
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, y0, x1, y1 = box
    left, top, right, bottom = x0 + 56, y0 + 36, x1 - 12, y1 - 40
    xs = np.asarray(x, np.float64)
    ys = [np.asarray(s.y, np.float64) for s in series]
    bands = [None if s.band is None else np.asarray(s.band, np.float64) for s in series]
    if y_range is None:
        vals = [y for y in ys if np.isfinite(y).any()]
        vals += [y + b for y, b in zip(ys, bands) if b is not None and np.isfinite(y + b).any()]
        vals += [y - b for y, b in zip(ys, bands) if b is not None and np.isfinite(y - b).any()]
        lo = min((float(np.nanmin(v)) for v in vals), default=0.0)
        hi = max((float(np.nanmax(v)) for v in vals), default=1.0)
    else:
        lo, hi = y_range
    if y_range is None and hi > lo:
        lo, hi = lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo)  # lines on the frame would hide under it
    yt = nice_ticks(lo, hi)
    lo, hi = min(yt[0], lo), max(yt[-1], hi)
    xt = nice_ticks(float(xs.min()), float(xs.max())) if len(xs) else [0.0, 1.0]
    xlo, xhi = min(xt[0], float(xs.min())), max(xt[-1], float(xs.max()))
    xt = [t for t in xt if xlo <= t <= xhi]

    def px(v: np.ndarray | float) -> np.ndarray | float:
        return left + (np.asarray(v) - xlo) / max(xhi - xlo, 1e-12) * (right - left)

    def py(v: np.ndarray | float) -> np.ndarray | float:
        return bottom - (np.asarray(v) - lo) / max(hi - lo, 1e-12) * (bottom - top)

    d.text((x0 + 8, y0 + 4), f"{title} ({ylabel})" if ylabel else title, fill=FG, font=font)
    for t in yt:
        yy = float(py(t))
        d.line([left, yy, right, yy], fill=GRID)
        d.text((x0 + 4, yy - 6), _fmt(t), fill=FG, font=font)
    for t in xt:
        xx = float(px(t))
        d.line([xx, top, xx, bottom], fill=GRID)
        label = _fmt(t)
        w = d.textlength(label, font=font)
        d.text((min(max(xx - w / 2, x0 + 2), x1 - w - 2), bottom + 4), label, fill=FG, font=font)  # centred, inside
    d.rectangle([left, top, right, bottom], outline=FG)
    d.text(((left + right) / 2 - 3 * len(xlabel), bottom + 20), xlabel, fill=FG, font=font)

    colours = [s.colour or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    for y, b, c in zip(ys, bands, colours):  # bands first, so every line stays visible on top
        if b is None:
            continue
        ok = np.isfinite(y) & np.isfinite(b)
        if ok.sum() >= 2:
            up = list(zip(px(xs[ok]).tolist(), py(np.clip(y[ok] + b[ok], lo, hi)).tolist()))
            down = list(zip(px(xs[ok]).tolist(), py(np.clip(y[ok] - b[ok], lo, hi)).tolist()))
            d.polygon(up + down[::-1], fill=_light(c))
    for y, c in zip(ys, colours):
        ok = np.isfinite(y)
        pts = list(zip(px(xs).tolist(), py(np.clip(np.where(ok, y, lo), lo, hi)).tolist()))
        run: list[tuple[float, float]] = []
        for p, good in zip(pts, ok):
            if good:
                run.append(p)
            elif run:
                _polyline(d, run, c)
                run = []
        _polyline(d, run, c)
    ly = top + 6
    # the legend sits in the top right corner, as wide as its longest label (at most half the plot: longer ones
    # are cut there rather than run off the image)
    room = (right - left) / 2
    labels = [_fit(d, s.label, font, room) for s in series]
    lx = right - 30 - max((d.textlength(t, font=font) for t in labels), default=0.0)
    for t, c in zip(labels, colours):
        d.line([lx - 26, ly + 6, lx - 6, ly + 6], fill=c, width=3)
        d.text((lx, ly), t, fill=FG, font=font)
        ly += 14


def _fit(d: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if d.textlength(text, font=font) <= width:
        return text
    while text and d.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _polyline(d: ImageDraw.ImageDraw, pts: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
    if len(pts) == 1:
        x, y = pts[0]
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    elif pts:
        d.line(pts, fill=colour, width=2)


def line_plot(
    path: str | Path,
    x: Sequence[float] | np.ndarray,
    series: Sequence[Series],
    title: str,
    xlabel: str,
    ylabel: str,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (760, 420),
) -> Path:
    img = Image.new("RGB", size, BG)
    draw_chart(img, (0, 0, size[0], size[1]), x, series, title, xlabel, ylabel, y_range)
    img.save(path)
    return Path(path)


def panel_plot(
    path: str | Path,
    x: Sequence[float] | np.ndarray,
    panels: Sequence[tuple[str, str, Sequence[Series]]],
    xlabel: str,
    size: tuple[int, int] = (900, 300),
) -> Path:
    """Charts stacked vertically, sharing ``x``: ``panels`` = (title, ylabel, series) each; ``size`` per panel."""
    w, h = size
    img = Image.new("RGB", (w, h * len(panels)), BG)
    for i, (title, ylabel, series) in enumerate(panels):
        draw_chart(img, (0, i * h, w, (i + 1) * h), x, series, title, xlabel, ylabel)
    img.save(path)
    return Path(path)
