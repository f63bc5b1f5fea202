"""The results plot: quality against latency and against weight size, per task (SVG).

One row of panels per task (metrics differ between tasks, so they never share an axis):
left, quality against latency — GPU latency when at least as many of the task's rows have
it as have a CPU latency, else CPU, and rows without the chosen figure are left out of
that panel (the axis label says which); right, quality against weight size. One point per
table row, coloured by team (squares are baselines, circles compressed rows); the Pareto
front — rows no other row beats on both axes — is drawn as a dashed step line and its
points are ringed. The y axis is the task's headline metric (the first of
``TASK_METRICS[task]`` that most rows have); fractions are shown in percent.

The SVG is byte-stable for unchanged data, so regenerating it on every merge only
changes the file when a result changed: no pyplot (no global state, no GUI backend), a
fixed ``svg.hashsalt`` for element ids, no date in the metadata, the DejaVu Sans font
that ships with matplotlib with text drawn as paths, and every list sorted.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcval.figures import FIGURES
from mcval.metrics import METRICS, TASK_METRICS, MetricKind
from mcval.policy import Policy
from mcval.results import ResultRecord

MAX_LABELLED_POINTS = 40
"""Above this many points in a panel, method names would overlap: points are not labelled."""
MAX_LEGEND_TEAMS = 20

_RC = {
    "svg.hashsalt": "mcval",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "path.simplify": False,
}
_TEXT = {
    "ru": {
        "better_high": "больше — лучше",
        "better_low": "меньше — лучше",
        "front": "Парето-фронт",
        "baseline": "базовая строка",
        "compressed": "сжатая модель",
        "empty": "Проверенных результатов пока нет",
        "rows": "строк",
        "log": "лог. шкала",
    },
    "en": {
        "better_high": "higher is better",
        "better_low": "lower is better",
        "front": "Pareto front",
        "baseline": "baseline",
        "compressed": "compressed",
        "empty": "No verified results yet",
        "rows": "rows",
        "log": "log scale",
    },
}


@dataclass(frozen=True)
class Point:
    """One row as a point of one panel."""

    x: float
    y: float
    team: str
    label: str
    baseline: bool


def headline_metric(task: str, records: Sequence[ResultRecord]) -> str | None:
    """The metric most of the task's rows have, ties broken by the task's metric order."""
    counts = Counter(m for r in records for m in r.measured.quality)
    order = list(TASK_METRICS.get(task, ())) + sorted(counts)
    candidates = [m for m in dict.fromkeys(order) if counts[m]]
    if not candidates:
        return None
    return max(candidates, key=lambda m: (counts[m], -order.index(m)))


def latency_field(records: Sequence[ResultRecord]) -> str:
    """GPU latency when at least as many rows have it as have a CPU latency."""
    gpu = sum(1 for r in records if r.measured.latency_gpu_ms)
    cpu = sum(1 for r in records if r.measured.latency_cpu_ms)
    return "latency_gpu_ms" if gpu and gpu >= cpu else "latency_cpu_ms"


def pareto_front(points: Sequence[Point], higher_is_better: bool) -> list[Point]:
    """Points no other point beats on both axes (smaller x, better y), sorted by x."""
    sign = -1.0 if higher_is_better else 1.0
    front: list[Point] = []
    best: float | None = None
    for point in sorted(points, key=lambda p: (p.x, sign * p.y, p.team, p.label)):
        score = sign * point.y
        if best is None or score < best:
            front.append(point)
            best = score
    return front


def _points(records: Sequence[ResultRecord], x_field: str, metric: str) -> list[Point]:
    info = METRICS.get(metric)
    scale = 100.0 if info is not None and info.kind is MetricKind.FRACTION else 1.0
    points = []
    for r in records:
        x = getattr(r.measured, x_field)
        y = r.measured.quality.get(metric)
        if x is None or y is None or x <= 0:
            continue
        points.append(Point(x, y * scale, r.team, r.method_label, r.baseline is None))
    return sorted(points, key=lambda p: (p.x, p.y, p.team, p.label))


def render_plot(records: Sequence[ResultRecord], policy: Policy) -> bytes:
    """The SVG for these records; the same records always give the same bytes."""
    import matplotlib
    from matplotlib.figure import Figure

    language = policy.table.language
    text = _TEXT[language]
    tasks = sorted({r.task for r in records})
    teams = sorted({r.team for r in records})
    cmap = matplotlib.colormaps["tab20" if len(teams) > 10 else "tab10"]
    colours = {team: cmap(i % cmap.N) for i, team in enumerate(teams)}
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(11.0, 1.0 + 3.6 * max(1, len(tasks))), layout="constrained")
        if not tasks:
            fig.set_size_inches(6.0, 1.5)
            fig.text(0.5, 0.5, text["empty"], ha="center", va="center", fontsize=11)
        for row, task in enumerate(tasks):
            task_records = sorted((r for r in records if r.task == task), key=lambda r: r.id)
            metric = headline_metric(task, task_records)
            axes = [fig.add_subplot(len(tasks), 2, 2 * row + 1 + i) for i in range(2)]
            if metric is None:
                for ax in axes:
                    ax.set_title(task)
                    ax.set_axis_off()
                continue
            info = METRICS.get(metric)
            higher = info.higher_is_better if info else True
            unit = ", %" if info is not None and info.kind is MetricKind.FRACTION else ""
            label = info.label if info else metric
            y_label = f"{label}{unit} ({text['better_high' if higher else 'better_low']})"
            for ax, x_field in zip(axes, (latency_field(task_records), "weights_mb"), strict=True):
                points = _points(task_records, x_field, metric)
                ax.set_title(f"{task} · {len(points)}/{len(task_records)} {text['rows']}")
                axis = FIGURES[x_field].text[language].axis
                ax.set_xlabel(axis + _log_note(points, text))
                ax.set_ylabel(y_label)
                ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
                if not points:
                    continue
                _x_axis(ax, [p.x for p in points])
                for is_base, marker in ((True, "s"), (False, "o")):
                    mine = [p for p in points if p.baseline is is_base]
                    if mine:
                        ax.scatter(
                            [p.x for p in mine],
                            [p.y for p in mine],
                            s=28,
                            marker=marker,
                            c=[colours[p.team] for p in mine],
                            edgecolors="black",
                            linewidths=0.4,
                            zorder=3,
                        )
                front = pareto_front(points, higher)
                ax.plot(
                    [p.x for p in front],
                    [p.y for p in front],
                    drawstyle="steps-post",
                    linestyle="--",
                    color="0.35",
                    linewidth=1.0,
                    zorder=2,
                )
                ax.scatter(
                    [p.x for p in front],
                    [p.y for p in front],
                    s=90,
                    facecolors="none",
                    edgecolors="0.2",
                    linewidths=0.8,
                    zorder=4,
                )
                if len(points) <= MAX_LABELLED_POINTS:
                    for p in points:
                        short = p.label if len(p.label) <= 24 else p.label[:23] + "…"
                        ax.annotate(
                            short,
                            (p.x, p.y),
                            xytext=(4, 3),
                            textcoords="offset points",
                            fontsize=6,
                            parse_math=False,  # a "$" in a method name is text, not TeX
                        )
        if tasks:
            _legend(fig, teams, colours, text)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "mcval"})
    return buffer.getvalue()


def _log_note(points: Sequence[Point], text: dict[str, str]) -> str:
    xs = [p.x for p in points]
    return f" ({text['log']})" if xs and max(xs) / min(xs) > 10 else ""


def _x_axis(ax: Any, xs: list[float]) -> None:
    """Log scale when the values span more than a decade; plain numbers as tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    if max(xs) / min(xs) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))


def _legend(
    fig: object, teams: list[str], colours: dict[str, object], text: dict[str, str]
) -> None:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    assert isinstance(fig, Figure)
    shown = teams[:MAX_LEGEND_TEAMS]
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[t], markeredgecolor="black", label=t)
        for t in shown
    ]
    if len(teams) > len(shown):
        handles.append(Line2D([], [], linestyle="", label=f"… +{len(teams) - len(shown)}"))
    handles += [
        Line2D(
            [],
            [],
            marker=marker,
            linestyle="",
            color="0.7",
            markeredgecolor="black",
            label=text[kind],
        )
        for marker, kind in (("s", "baseline"), ("o", "compressed"))
    ]
    handles.append(Line2D([], [], linestyle="--", color="0.35", label=text["front"]))
    fig.legend(
        handles=handles, loc="outside upper center", ncols=min(len(handles), 6), frameon=False
    )
