"""The four plots of the HTML report, as inline SVG text (self-contained: no files, no network).

matplotlib is used through its object API (matplotlib.figure.Figure) rather than pyplot, so building a report never
switches the backend or touches global state of the process that calls it (a notebook, the CLI); settings live in
an rc_context. Text stays text in the SVG (svg.fonttype none): small files, and the adapter names are searchable
in the page. A fixed hash salt keeps the SVG identical from run to run, so committed reports diff cleanly."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

from .document import fmt_pct
from .perf import BASE, PHASE_LABEL, PHASES, PerfRow, scenarios

IMPL_COLOURS = {"gradguard": "#0f766e", "peft": "#94a3b8", "fork_dense": "#d97706"}
OTHER_IMPL_COLOUR = "#6366f1"
SLOWER_COLOUR = "#dc2626"
INK = "#1f2937"
GRID = "#e5e7eb"
FIG_WIDTH = 11.0

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "gradguard-report",
    "font.family": ["DejaVu Sans", "sans-serif"],
    "font.size": 9,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "axes.titlesize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": INK,
    "ytick.color": INK,
}


@dataclass
class Bar:
    label: str
    value: float
    colour: str
    text: str
    legend: str = ""  # the implementation it stands for, when the colours need a legend


def _mpl():
    """matplotlib, imported only when a plot is drawn: the Markdown report and the loaders do not need it."""
    import matplotlib
    from matplotlib.figure import Figure

    return matplotlib, Figure


def _to_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE: the SVG goes inline into HTML


SYMLOG_ABOVE = 150.0  # a linear panel whose largest value passes this switches to a symmetric-log axis


def _impl_colour(impl: str) -> str:
    return IMPL_COLOURS.get(impl, OTHER_IMPL_COLOUR)


def _bar_grid(grid: list[tuple[str, dict[str, list[Bar]]]], xlabel: str, *, log: bool = False,
              reference: dict | None = None, legend: list[str] = ()) -> str:
    """One row of panels per scenario, one column per phase; each panel a horizontal bar chart sorted by value
    (largest at the top). `reference` maps (scenario, phase) to (x, label): a dashed line, named in the axis label
    (inside the panel it would collide with the bars). On a log axis bars start at 1 (slower goes left, in red)."""
    matplotlib, Figure = _mpl()
    with matplotlib.rc_context(_RC):
        heights = [0.9 + 0.24 * max(len(bars) for bars in panels.values()) for _, panels in grid]
        fig = Figure(figsize=(FIG_WIDTH, sum(heights) + 0.3 * len(grid)), layout="constrained")
        subfigs = fig.subfigures(len(grid), 1, height_ratios=heights, squeeze=False)[:, 0]
        for subfig, (scenario, panels) in zip(subfigs, grid):
            subfig.suptitle(scenario, x=0.005, ha="left", fontsize=10, fontweight="bold", color=INK)
            axes = subfig.subplots(1, len(PHASES), squeeze=False)[0]
            for ax, phase in zip(axes, PHASES):
                ref = (reference or {}).get((scenario, phase))
                _bar_panel(ax, panels.get(phase, []), log, ref)
                ax.set_title(PHASE_LABEL[phase], loc="left", color="#4b5563")
                ax.set_xlabel(xlabel + (f"; dashed: {ref[1]}" if ref else ""))
        if legend:
            from matplotlib.patches import Patch

            fig.legend(handles=[Patch(color=_impl_colour(i), label=i) for i in legend], loc="outside upper right",
                       ncols=len(legend), frameon=False)
        return _to_svg(fig)


def _bar_panel(ax, bars: list[Bar], log: bool, reference: tuple[float, str] | None) -> None:
    if not bars:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#9ca3af")
        ax.set_yticks([])
        return
    bars = sorted(bars, key=lambda b: b.value)
    ys = range(len(bars))
    values = [b.value for b in bars]
    origin = 1.0 if log else 0.0
    ax.barh(ys, [v - origin for v in values], left=origin, color=[b.colour for b in bars], height=0.68, zorder=2)
    ax.set_yticks(list(ys), [b.label for b in bars])
    ax.set_ylim(-0.6, len(bars) - 0.4)
    ax.grid(axis="x", color=GRID, zorder=0)
    marks = values + [origin] + ([reference[0]] if reference else [])
    lo, hi = min(marks), max(marks)
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(lo / (1.5 if lo < 1 else 1.12), hi * 1.8)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvspan(ax.get_xlim()[0], 1.0, color=SLOWER_COLOUR, alpha=0.07, zorder=0)
    elif hi > SYMLOG_ABOVE:
        # a few bars in the thousands of % (a dense d x d product in PEFT) would flatten every other bar to a hair:
        # linear up to 10, logarithmic beyond, so +5% and +2000% both stay readable
        from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

        ax.set_xscale("symlog", linthresh=10, linscale=0.6)
        ax.set_xlim(min(lo * 3, 0), hi * 3)  # room left of 0 for the labels of negative bars
        ax.xaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=10, subs=(1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        span = (hi - lo) or 1.0
        ax.set_xlim(lo - (0.2 * span if lo < 0 else 0), hi + 0.2 * span)
    if reference:
        ax.axvline(reference[0], color=INK, linestyle="--", linewidth=1, zorder=3)
    for y, b in zip(ys, bars):
        leftward = b.value < origin
        ax.annotate(b.text, (b.value, y), xytext=(-3 if leftward else 3, 0), textcoords="offset points",
                    ha="right" if leftward else "left", va="center", fontsize=7.5, color=INK, zorder=4)


def _grid(rows: list[PerfRow], bars_for) -> list[tuple[str, dict[str, list[Bar]]]]:
    """Scenario by scenario, the bars each phase panel shows; scenarios with no bar at all are left out."""
    grid = []
    for scenario in scenarios(rows):
        mine = [r for r in rows if r.scenario == scenario and not r.unsupported]
        panels = {p: [b for r in mine if (b := bars_for(r, p)) is not None] for p in PHASES}
        if any(panels.values()):
            grid.append((scenario, panels))
    return grid


def _impls_shown(grid) -> list[str]:
    shown = {b.legend for _, panels in grid for bars in panels.values() for b in bars if b.legend}
    order = list(IMPL_COLOURS)
    return sorted(shown, key=lambda i: (order.index(i) if i in order else len(order), i))


def overhead(rows: list[PerfRow]) -> str | None:
    """(1) Time over the base matmul alone, in %, for every adapter and implementation."""
    def bar(r: PerfRow, phase: str) -> Bar | None:
        ratio = r.over_base.get(phase)
        if r.impl == BASE or ratio is None:
            return None
        return Bar(f"{r.adapter} · {r.impl}", 100 * (ratio - 1), _impl_colour(r.impl), fmt_pct(ratio - 1, signed=True),
                   r.impl)

    grid = _grid(rows, bar)
    return _bar_grid(grid, "time over the base matmul (%; logarithmic beyond 10% when a bar passes "
                           f"{SYMLOG_ABOVE:g}%)", legend=_impls_shown(grid)) if grid else None


def speedup(rows: list[PerfRow]) -> str | None:
    """(2) gradguard's speed-up over PEFT's own layer (t_peft / t_gradguard), log scale, 1x marked."""
    def bar(r: PerfRow, phase: str) -> Bar | None:
        v = r.speedup_vs_peft.get(phase)
        if v is None or v <= 0:
            return None
        return Bar(r.adapter, v, IMPL_COLOURS["gradguard"] if v >= 1 else SLOWER_COLOUR, f"{v:.2f}×")

    grid = _grid(rows, bar)
    if not grid:
        return None
    reference = {(s, p): (1.0, "1× = PEFT; red zone: slower") for s, _ in grid for p in PHASES}
    return _bar_grid(grid, "speed-up over PEFT (log scale)", log=True, reference=reference)


def roofline(rows: list[PerfRow]) -> str | None:
    """(3) Achieved fraction of the attainable FLOP/s or bandwidth (whichever bounds the kernel), per adapter."""
    def bar(r: PerfRow, phase: str) -> Bar | None:
        v = r.roofline.get(phase)
        if r.impl == BASE or v is None:
            return None
        return Bar(f"{r.adapter} · {r.impl}", 100 * v, _impl_colour(r.impl), fmt_pct(v), r.impl)

    grid = _grid(rows, bar)
    if not grid:
        return None
    reference = {(r.scenario, p): (100 * r.roofline[p], f"base matmul {fmt_pct(r.roofline[p])}")
                 for r in rows if r.impl == BASE for p in PHASES if r.roofline.get(p) is not None}
    return _bar_grid(grid, "% of roofline", reference=reference, legend=_impls_shown(grid))


# -- (4) error budget heatmap ---------------------------------------------------------------------------------------

SKIPPED = "skipped"


def error_budget(adapters: list[str], columns: list[str], cells: dict[tuple[str, str], float | str]) -> str | None:
    """Adapters down, backend·dtype across; each cell the worst % of the tolerance budget used over every tensor
    and flag variant. Pale green to amber up to 100%; anything over budget is solid red, so it cannot be missed."""
    if not adapters or not columns:
        return None
    matplotlib, Figure = _mpl()
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    values = np.full((len(adapters), len(columns)), np.nan)
    for (a, c), v in cells.items():
        if isinstance(v, (int, float)):
            values[adapters.index(a), columns.index(c)] = min(float(v), 1e9)  # inf (a NaN error) stays "over"
    cmap = LinearSegmentedColormap.from_list("budget", ["#dcfce7", "#fef9c3", "#fdba74"]).with_extremes(
        over="#dc2626", bad="#f3f4f6")
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(2.2 + 0.95 * len(columns), max(2.4, 0.8 + 0.27 * len(adapters))), layout="constrained")
        ax = fig.subplots()
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=Normalize(0, 100), aspect="auto")
        ax.set_xticks(range(len(columns)), [c.replace(" · ", "\n") for c in columns])
        ax.set_yticks(range(len(adapters)), adapters)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks([x - 0.5 for x in range(1, len(columns))], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(adapters))], minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        for (a, c), v in cells.items():
            x, y = columns.index(c), adapters.index(a)
            over = isinstance(v, (int, float)) and not v <= 100
            ax.text(x, y, _budget_text(v), ha="center", va="center", fontsize=7.5,
                    color="white" if over else ("#9ca3af" if v == SKIPPED else INK),
                    fontweight="bold" if over else "normal")
        bar = fig.colorbar(image, ax=ax, extend="max", shrink=min(1.0, 8 / len(adapters) + 0.3), pad=0.02)
        bar.set_label("% of budget (red arrow: over)")
        return _to_svg(fig)


def _budget_text(v: float | str) -> str:
    if v == SKIPPED:
        return "skip"
    if not math.isfinite(v):
        return "∞"
    if v == 0:
        return "0"
    return "<1%" if v < 1 else f"{v:.0f}%"
