"""Bar charts as geometry for inline SVG, drawn on the server: no script, no chart library.

A chart is a list of rows (a label and its segments). Segments of a row are
stacked end to end, or drawn as a group of thinner bars one under another.
The template draws the rectangles and texts computed here; colours come from
CSS classes, so the page's stylesheet decides them and no inline style is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH = 560
LABEL_WIDTH = 96  # the row labels, left of the bars
VALUE_WIDTH = 112  # room right of the longest bar for its value
TOP, BOTTOM = 8, 26  # above the first row; below the last, for the axis labels


@dataclass(frozen=True)
class Segment:
    key: str  # what the segment counts: a status, "p50"…
    value: float | None
    css: str  # a class the stylesheet colours


@dataclass(frozen=True)
class Row:
    label: str
    segments: Sequence[Segment]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"
    css: str = ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    rects: list[Rect]
    texts: list[Text]
    gridlines: list[float]  # x positions
    grid_top: float
    grid_bottom: float
    legend: list[tuple[str, str]]  # (label, css)
    empty: bool


def bar_chart(rows: Sequence[Row], *, stacked: bool = True, fmt: Callable[[float], str] = lambda v: f"{v:g}",
              legend: Sequence[tuple[str, str]] = (), steps: Sequence[float] | None = None) -> Chart:
    """Horizontal bars, one row per label; values written at the end of each bar (or group).

    The axis runs from 0 in equal steps chosen from `steps` (default 1, 2, 5 × 10ⁿ counts).
    A segment whose value is None (nothing measured yet) draws no bar and reads "–".
    """
    bar, gap = (18, 0) if stacked else (14, 3)
    bars_per_row = 1 if stacked else max((len(row.segments) for row in rows), default=1)
    per_row = bars_per_row * (bar + gap) + 12
    lengths = [sum(s.value or 0 for s in row.segments) if stacked else max((s.value or 0 for s in row.segments),
                                                                          default=0)
               for row in rows]
    step = nice_step(max(lengths, default=0), steps or COUNT_STEPS)
    top = step * math.ceil(max(lengths, default=0) / step) if step else 0.0
    scale = (WIDTH - LABEL_WIDTH - VALUE_WIDTH) / top if top else 0.0
    rects: list[Rect] = []
    texts: list[Text] = []
    for index, row in enumerate(rows):
        y = TOP + index * per_row + 6
        texts.append(Text(LABEL_WIDTH - 8, y + bars_per_row * (bar + gap) / 2 + 4, row.label, "end", "chart-label"))
        x = float(LABEL_WIDTH)
        for position, segment in enumerate(row.segments):
            width = (segment.value or 0) * scale
            shown = "–" if segment.value is None else fmt(segment.value)
            title = f"{row.label}, {segment.key}: {shown}"
            if stacked:
                if width > 0:
                    rects.append(Rect(x, y, width, bar, segment.css, title))
                x += width
            else:
                sub_y = y + position * (bar + gap)
                rects.append(Rect(LABEL_WIDTH, sub_y, width, bar, segment.css, title))
                texts.append(Text(LABEL_WIDTH + width + 4, sub_y + bar - 3, f"{segment.key} {shown}",
                                  css="chart-value"))
        if stacked:
            texts.append(Text(x + 4, y + bar - 4, fmt(lengths[index]), css="chart-value"))
    grid_bottom = TOP + per_row * len(rows)
    gridlines = []
    for tick in ticks(top, step):
        gridlines.append(LABEL_WIDTH + tick * scale)
        texts.append(Text(gridlines[-1], grid_bottom + 16, fmt(tick), "middle", "chart-axis"))
    return Chart(WIDTH, grid_bottom + BOTTOM, rects, texts, gridlines, TOP, grid_bottom, list(legend),
                 empty=not any(lengths))


COUNT_STEPS = tuple(step * 10 ** power for power in range(0, 10) for step in (1, 2, 5))
DURATION_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
                  7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)


def nice_step(largest: float, steps: Sequence[float], most: int = 5) -> float:
    """The smallest step from `steps` that spans `largest` in at most `most` steps (0 for nothing to draw)."""
    if largest <= 0:
        return 0.0
    for step in steps:
        if step * most >= largest:
            return float(step)
    return float(steps[-1]) * math.ceil(largest / (steps[-1] * most))


def ticks(top: float, step: float) -> list[float]:
    """The axis values: 0, step, 2·step … top."""
    if step <= 0:
        return [0.0]
    return [step * i for i in range(round(top / step) + 1)]
