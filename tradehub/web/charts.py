"""Bar charts as geometry for inline SVG, drawn on the server: no script, no chart library.

A chart is a list of rows (a label and its segments). Segments of a row are
stacked end to end, or drawn as a group of thinner bars one under another.
The axis is linear from 0, or logarithmic (grouped bars only) where values
span orders of magnitude: clearance times run from milliseconds to days, and on
a linear axis one 39 s clearance leaves every sub-second bar a sliver.
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
    note: str = ""  # how to read the axis, where it is not the plain linear one


@dataclass(frozen=True)
class Axis:
    """Where a value ends along the bars (0 to `length` pixels), and the values to draw gridlines at."""

    length: float
    ticks: list[float]
    low: float = 0.0  # where the bars start: 0 on a linear axis, a tick below the smallest value on a log one
    high: float = 0.0
    log: bool = False

    def at(self, value: float | None) -> float:
        if not value or value <= self.low or self.high <= self.low:
            return 0.0
        if self.log:
            return self.length * math.log(value / self.low) / math.log(self.high / self.low)
        return self.length * (value - self.low) / (self.high - self.low)


def linear_axis(largest: float, steps: Sequence[float], length: float) -> Axis:
    """From 0 to a whole number of steps from `steps` (at most five) past `largest`."""
    step = nice_step(largest, steps)
    top = step * math.ceil(largest / step) if step else 0.0
    return Axis(length, ticks(top, step), 0.0, top)


def log_axis(values: Sequence[float], marks: Sequence[float], length: float) -> Axis:
    """From the mark below the smallest positive value to the mark at or above the largest, `marks` ascending.
    Starting a mark *below* the smallest keeps its bar visible; a value beyond the marks extends the axis."""
    positive = [value for value in values if value > 0]
    if not positive:
        return Axis(length, [0.0])
    smallest, largest = min(positive), max(positive)
    low = max((mark for mark in marks if mark < smallest), default=smallest / 10)
    high = min((mark for mark in marks if mark >= largest), default=largest)
    return Axis(length, [mark for mark in marks if low <= mark <= high] or [low, high], low, high, log=True)


def bar_chart(rows: Sequence[Row], *, stacked: bool = True, fmt: Callable[[float], str] = lambda v: f"{v:g}",
              legend: Sequence[tuple[str, str]] = (), steps: Sequence[float] | None = None,
              log_marks: Sequence[float] | None = None) -> Chart:
    """Horizontal bars, one row per label; values written at the end of each bar (or group).

    The axis runs from 0 in equal steps chosen from `steps` (default 1, 2, 5 × 10ⁿ counts); with `log_marks`
    (grouped bars only) it is logarithmic, with gridlines at those marks (`log_axis`).
    A segment whose value is None (nothing measured yet) draws no bar and reads "–".
    """
    if log_marks is not None and stacked:
        raise ValueError("stacked bars add up lengths, which a log axis does not")
    bar, gap = (18, 0) if stacked else (14, 3)
    bars_per_row = 1 if stacked else max((len(row.segments) for row in rows), default=1)
    per_row = bars_per_row * (bar + gap) + 12
    lengths = [sum(s.value or 0 for s in row.segments) if stacked else max((s.value or 0 for s in row.segments),
                                                                          default=0)
               for row in rows]
    length = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    if log_marks is None:
        axis = linear_axis(max(lengths, default=0), steps or COUNT_STEPS, length)
    else:
        axis = log_axis([s.value for row in rows for s in row.segments if s.value], log_marks, length)
    rects: list[Rect] = []
    texts: list[Text] = []
    for index, row in enumerate(rows):
        y = TOP + index * per_row + 6
        texts.append(Text(LABEL_WIDTH - 8, y + bars_per_row * (bar + gap) / 2 + 4, row.label, "end", "chart-label"))
        x = float(LABEL_WIDTH)
        for position, segment in enumerate(row.segments):
            width = axis.at(segment.value)  # stacked bars are linear from 0, where lengths add up
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
    for tick in axis.ticks:
        gridlines.append(LABEL_WIDTH + axis.at(tick))
        texts.append(Text(gridlines[-1], grid_bottom + 16, fmt(tick), "middle", "chart-axis"))
    note = "Log scale: equal distances are equal ratios, so one slow value leaves the others readable." \
        if axis.log else ""
    return Chart(WIDTH, grid_bottom + BOTTOM, rects, texts, gridlines, TOP, grid_bottom, list(legend),
                 empty=not any(lengths), note=note)


COUNT_STEPS = tuple(step * 10 ** power for power in range(0, 10) for step in (1, 2, 5))
# Gridlines of a log axis of durations: decades below a minute, then the units people count in.
LOG_DURATION_MARKS = (0.001, 0.01, 0.1, 1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 28 * 86400)


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
