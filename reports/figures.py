"""Plotly figures drawn from the report's plain data; every trace that holds trial points says so in ``meta``.

``meta={"role": "trial"}`` marks traces whose points are finished trials (one point each), so a browser test can
count them; fronts, test accuracy and labels carry other roles.
"""
from __future__ import annotations

import math
import textwrap

import plotly.graph_objects as go

from reports.choices import Choices
from reports.data import GenomeDrawing, Hypervolume, ParetoDetail, ReportData, TrialPoint

FAMILY_COLORS = {  # the layer designs of nas.search.genomes.genome_family, in a colour-blind-safe order
    "plain": "#0072B2", "permutation": "#E69F00", "twist": "#009E73", "grouped-pattern": "#CC79A7",
    "decomposed": "#D55E00", "dense": "#56B4E9", "unknown": "#999999",
}
SEARCH_FRONT = "#222222"
DENSE_FRONT = "#8C8C8C"
FULL_LABEL_COLUMNS = 4  # genome graphs up to this many nodes side by side get "op shape" labels
OP_LABEL_COLUMNS = 6  # ... up to this many the op alone; wider ones are labelled on hover only
MAX_IMPORTANCE_BARS = 15
X_MARGIN = 1.25  # the Pareto plot's x range reaches this factor beyond the smallest and largest network
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size=13)


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, FAMILY_COLORS["unknown"])


def _summary_lines(summary: str, width: int = 72, lines: int = 4) -> str:
    """The genome summary broken after hyphens into at most ``lines`` hover lines."""
    wrapped = textwrap.wrap(summary, width, break_on_hyphens=True) or [""]
    return "<br>".join(wrapped[:lines]) + ("…" if len(wrapped) > lines else "")


def hover_text(p: TrialPoint, front: bool = False) -> str:
    """Trial number, accuracy, params, FLOPs, epochs and the genome summary."""
    head = f"<b>trial {p.number}</b> · {p.family}" + (f" · zoo {p.zoo}" if p.zoo else "")
    state = "pruned" if p.state == "pruned" else ("Pareto" if front else "complete")
    test = f" (test {p.test_accuracy:.1%})" if p.test_accuracy is not None else ""
    flops = f"{p.flops:,}" if p.flops is not None else "?"
    twin = f"<br>same genome as trial {p.duplicate_of}" if p.duplicate_of is not None else ""
    return (f"{head}<br>val accuracy {p.val_accuracy:.1%}{test} · {state} after {p.epochs} epoch(s)"
            f"<br>params {p.params:,} · FLOPs {flops}{twin}<br><span style='font-size:11px'>"
            f"{_summary_lines(p.summary)}</span>")


def _layout(fig: go.Figure, height: int, **extra) -> go.Figure:
    settings = dict(template="plotly_white", font=FONT, height=height, margin=dict(l=70, r=30, t=70, b=60),
                    hoverlabel=dict(align="left"))
    fig.update_layout(**{**settings, **extra})
    return fig


def log_ticks(values: list[float]) -> list[float]:
    """1-2-5 ticks covering ``values`` (plotly's own log ticks label minor ticks with a bare digit)."""
    if not values:
        return []
    low, high = min(values), max(values)
    ticks, decade = [], 10 ** math.floor(math.log10(max(low, 1)))
    while decade <= high * 10:
        ticks += [m * decade for m in (1, 2, 5) if low / 1.5 <= m * decade <= high * 1.5]
        decade *= 10
    return ticks


def _si(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _front_xy(points: list[TrialPoint], accuracy: str = "val_accuracy") -> tuple[list[int], list[float]]:
    ordered = sorted(points, key=lambda p: p.params)
    return [p.params for p in ordered], [getattr(p, accuracy) for p in ordered]


def pareto_figure(data: ReportData) -> go.Figure:
    """Val accuracy against params (log): trials by family, pruned faint, both fronts as steps, zoo labelled."""
    fig = go.Figure()
    pareto_numbers = {p.number for p in data.pareto}
    complete = [p for p in data.points if p.state == "complete" and not p.zoo]
    for family in sorted({p.family for p in complete}):
        pts = [p for p in complete if p.family == family]
        fig.add_scatter(x=[p.params for p in pts], y=[p.val_accuracy for p in pts], mode="markers", name=family,
                        legendgroup=family, meta={"role": "trial"},
                        marker=dict(color=family_color(family), size=10, line=dict(color="white", width=1)),
                        hovertext=[hover_text(p, p.number in pareto_numbers) for p in pts], hoverinfo="text")
    pruned = [p for p in data.points if p.state == "pruned" and not p.zoo]
    for family in sorted({p.family for p in pruned}):
        pts = [p for p in pruned if p.family == family]
        fig.add_scatter(x=[p.params for p in pts], y=[p.val_accuracy for p in pts], mode="markers", opacity=0.35,
                        name=f"{family} (pruned)", legendgroup=family, showlegend=False, meta={"role": "trial"},
                        marker=dict(color=family_color(family), size=8),
                        hovertext=[hover_text(p) for p in pts], hoverinfo="text")
    if pruned:  # one grey legend entry for all pruned points
        fig.add_scatter(x=[None], y=[None], mode="markers", name="pruned (faint, accuracy when stopped)",
                        marker=dict(color="#999", size=8), opacity=0.35, meta={"role": "legend"}, hoverinfo="skip")
    zoo = [p for p in data.points if p.zoo]
    if zoo:
        fig.add_scatter(x=[p.params for p in zoo], y=[p.val_accuracy for p in zoo], mode="markers+text",
                        name="zoo (warm start)", meta={"role": "trial"}, text=[p.zoo for p in zoo],
                        textposition="bottom center", textfont=dict(size=11, color="#444"),
                        marker=dict(symbol="star", size=15, color=[family_color(p.family) for p in zoo],
                                    opacity=[1.0 if p.state == "complete" else 0.4 for p in zoo],
                                    line=dict(color="#333", width=1)),
                        hovertext=[hover_text(p, p.number in pareto_numbers) for p in zoo], hoverinfo="text")
    sizes = [p.params for p in data.points + data.baseline_front] or [1]
    left, right = min(sizes) / X_MARGIN, max(sizes) * X_MARGIN  # fronts run to the right edge
    if data.pareto:
        x, y = _front_xy(data.pareto)
        fig.add_scatter(x=x + [right], y=y + [y[-1]], mode="lines", line=dict(shape="hv", color=SEARCH_FRONT, width=2),
                        name="searched Pareto front", meta={"role": "front"}, hoverinfo="skip")
        tested = sorted((p for p in data.pareto if p.test_accuracy is not None), key=lambda p: p.params)
        fig.add_scatter(x=[p.params for p in tested], y=[p.test_accuracy for p in tested], mode="markers",
                        name="test accuracy (Pareto set)", meta={"role": "test"},
                        marker=dict(symbol="circle-open", size=12, color=SEARCH_FRONT, line=dict(width=2)),
                        hovertext=[f"trial {p.number}: test accuracy {p.test_accuracy:.1%}" for p in tested],
                        hoverinfo="text")
    if data.baseline_front:
        x, y = _front_xy(data.baseline_front)
        fig.add_scatter(x=x + [right], y=y + [y[-1]], mode="lines", line=dict(shape="hv", color=DENSE_FRONT,
                        width=2, dash="dash"), name="dense baseline front", legendgroup="dense-front",
                        meta={"role": "baseline"}, hoverinfo="skip")
        fig.add_scatter(x=x, y=y, mode="markers", name="dense baseline front", legendgroup="dense-front",
                        showlegend=False, meta={"role": "baseline"},
                        marker=dict(symbol="square", size=10, color=DENSE_FRONT),
                        hovertext=[hover_text(p, True) for p in sorted(data.baseline_front, key=lambda p: p.params)],
                        hoverinfo="text")
    not_drawn = ", ".join(f"{n} {why}" for why, n in data.not_drawn.items())
    if data.infeasible_zoo:
        not_drawn += f" (zoo {', '.join(data.infeasible_zoo)} over the constraints)"
    subtitle = f"{len(data.points)} finished trials" + (f"; not drawn: {not_drawn}" if not_drawn else "")
    lines = textwrap.wrap(data.headline.text, 90)  # plotly titles do not wrap by themselves
    _layout(fig, 560 + 22 * (len(lines) - 1),
            title=dict(text="<br>".join(lines), subtitle=dict(text=subtitle), x=0.01, xanchor="left"),
            legend=dict(orientation="h", yanchor="top", y=-0.14, x=0, xanchor="left"),
            margin=dict(l=70, r=30, t=80 + 24 * (len(lines) - 1), b=110))
    ticks = log_ticks(sizes)
    fig.update_xaxes(type="log", title="parameters (log scale)", tickvals=ticks, ticktext=[_si(t) for t in ticks],
                     range=[math.log10(max(left, 1)), math.log10(right)])
    accuracies = [p.val_accuracy for p in data.points + data.baseline_front]
    accuracies += [p.test_accuracy for p in data.pareto if p.test_accuracy is not None]
    fig.update_yaxes(title="validation accuracy", tickformat=".0%", range=[0, min(1.02, max(accuracies) + 0.06)]
                     if accuracies else [0, 1])
    return fig


def hypervolume_figure(hv: Hypervolume) -> go.Figure:
    """Two panels: running hypervolume by trial number and by completion time, the dense baseline's dashed."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("by trial number", "by wall-clock time"),
                        horizontal_spacing=0.1)
    fig.add_scatter(x=hv.numbers, y=hv.by_number, mode="lines+markers", line=dict(shape="hv", color=SEARCH_FRONT),
                    name="search", row=1, col=1, hovertemplate="trial %{x}: %{y:.3f}<extra></extra>")
    fig.add_scatter(x=hv.times, y=hv.by_time, mode="lines+markers", line=dict(shape="hv", color=SEARCH_FRONT),
                    name="search", showlegend=False, row=1, col=2, hovertemplate="%{x}: %{y:.3f}<extra></extra>")
    if hv.baseline is not None:
        for col in (1, 2):
            fig.add_hline(y=hv.baseline, line=dict(color=DENSE_FRONT, dash="dash"), row=1, col=col,
                          annotation_text="dense baseline", annotation_position="bottom right",
                          annotation_font=dict(color="#666", size=11))
    _layout(fig, 360, showlegend=False)
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text="completion time", row=1, col=2)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="hypervolume", row=1, col=1)
    return fig


def importance_figure(choices: Choices) -> go.Figure | None:
    """Horizontal bars, most important on top; None when Optuna could not rank (the page shows the note)."""
    ranked = [name for name, share in choices.importances.items() if share > 0][:MAX_IMPORTANCE_BARS]
    if not ranked:
        return None
    left_out = len(choices.importances) - len(ranked)
    names = ranked[::-1]
    fig = go.Figure(go.Bar(x=[choices.importances[n] for n in names], y=names, orientation="h",
                           marker_color="#4C78A8", hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    _layout(fig, 110 + 24 * len(names), margin=dict(l=170, r=30, t=20, b=60))
    more = f" ({left_out} more with less or no importance not shown)" if left_out else ""
    fig.update_xaxes(title=f"share of importance for val accuracy (Optuna PED-ANOVA){more}", tickformat=".0%")
    return fig


def choices_figure(choices: Choices) -> go.Figure | None:
    """Parallel coordinates of the choices, coloured by val accuracy; categories on integer ticks."""
    if len(choices.trials) < 2:
        return None
    dims = []
    for axis in choices.axes:
        dim = dict(label=axis.name, values=axis.values)
        if axis.tick_values is not None:
            dim.update(tickvals=axis.tick_values, ticktext=axis.tick_labels,
                       range=[-0.5, max(axis.tick_values) + 0.5] if len(axis.tick_values) == 1 else None)
        elif axis.name == "val accuracy":
            dim.update(tickformat=".0%")
        dims.append({k: v for k, v in dim.items() if v is not None})
    accuracy = choices.axes[-1].values
    low, high = min(accuracy), max(accuracy)
    fig = go.Figure(go.Parcoords(dimensions=dims, labelangle=-20, labelside="top", line=dict(
        color=accuracy, colorscale="Viridis", showscale=True, cmin=low, cmax=high if high > low else low + 0.01,
        colorbar=dict(title="val acc", tickformat=".0%"))))
    _layout(fig, 440, margin=dict(l=90, r=70, t=110, b=40))
    return fig


def curve_figure(detail: ParetoDetail) -> go.Figure:
    """Val accuracy per epoch of one Pareto trial."""
    fig = go.Figure(go.Scatter(x=detail.curve_epochs, y=detail.curve_val_accuracy, mode="lines+markers",
                               line=dict(color=family_color(detail.point.family)),
                               hovertemplate="epoch %{x}: %{y:.1%}<extra></extra>"))
    _layout(fig, 280, margin=dict(l=60, r=20, t=40, b=50), title=dict(text="learning curve", x=0.02, font_size=14))
    fig.update_xaxes(title="epoch", dtick=1 if len(detail.curve_epochs) <= 12 else None)
    values = detail.curve_val_accuracy or [0.0]
    middle = (min(values) + max(values)) / 2  # at least 10 points of accuracy tall, inside [0, 1]
    fig.update_yaxes(title="val accuracy", tickformat=".0%", range=[max(0.0, min(min(values) - 0.02, middle - 0.05)),
                                                                   min(1.0, max(max(values) + 0.02, middle + 0.05))])
    return fig


def genome_figure(drawing: GenomeDrawing, color: str) -> go.Figure | None:
    """The genome's DAG, input on top: edges as lines, nodes labelled with op and output shape."""
    if not drawing.nodes:
        return None
    where = {n.name: n for n in drawing.nodes}
    xs, ys = [], []
    for source, target in drawing.edges:
        xs += [where[source].x, where[target].x, None]
        ys += [where[source].y, where[target].y, None]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=ys, mode="lines", line=dict(color="#bbb", width=1), hoverinfo="skip")
    widest = max(sum(1 for n in drawing.nodes if n.layer == d.layer) for d in drawing.nodes)
    if widest <= FULL_LABEL_COLUMNS:  # "conv 8×16"; wider graphs get the op only, then hover only
        labels = [f"{n.op} {n.shape}" for n in drawing.nodes]
    else:
        labels = [n.op if widest <= OP_LABEL_COLUMNS else "" for n in drawing.nodes]
    fig.add_scatter(x=[n.x for n in drawing.nodes], y=[n.y for n in drawing.nodes], mode="markers+text",
                    text=labels, textposition="middle right", textfont=dict(size=10 if widest <= 4 else 9),
                    marker=dict(size=8, color=color),
                    hovertext=[f"{n.name}: {n.op} → {n.shape}<br>{n.params:,} params" for n in drawing.nodes],
                    hoverinfo="text")
    depth = max(-n.y for n in drawing.nodes)
    width = max(n.x for n in drawing.nodes) - min(n.x for n in drawing.nodes)
    _layout(fig, int(80 + 22 * (depth + 1)), showlegend=False, margin=dict(l=10, r=10, t=40, b=10),
            title=dict(text="genome graph", x=0.02, font_size=14))
    fig.update_xaxes(visible=False, range=[min(n.x for n in drawing.nodes) - 0.3, max(n.x for n in drawing.nodes)
                                           + 0.9 + 0.1 * width])
    fig.update_yaxes(visible=False, range=[-depth - 0.6, 0.6])
    return fig
