"""What a recovered order looks like: the mean training input as the data holds it and as a ``reorder`` op reads it.

On permuted images the first is noise and the second, when the order is good, is a garment again (``grid``), or
a smooth signal (``spectral``, ``chain``). The data is loaded from the study's dataset spec (the order came from
its training split); a report still renders when the data is missing, with a note saying why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from evaluators.datasets import load_dataset
from evaluators.errors import DatasetError
from reports.findings import scored


@dataclass(frozen=True)
class RecoveredLayout:
    """One distinct order: its method, how many trained trials use it, the mean input before and after it."""

    method: str
    trials: int
    given: np.ndarray  # mean training input as stored (H x W for images, else 1D)
    recovered: np.ndarray  # the same mean read through the order (H x W for grid, else 1D)


def orders_in(trials: list[FrozenTrial]) -> dict[tuple[str, tuple[int, ...]], int]:
    """(method, order) -> how many trained trials' genomes read their input through it."""
    found: dict[tuple[str, tuple[int, ...]], int] = {}
    for point in scored(trials):
        for node in point.nodes:
            if node.get("op") == "reorder":
                key = (node["method"], tuple(int(i) for i in node["order"]))
                found[key] = found.get(key, 0) + 1
    return found


def recovered_layouts(dataset: dict, trials: list[FrozenTrial]) -> tuple[list[RecoveredLayout], str | None]:
    """The layouts of the orders the trials use, or none and why (no reorder op, or the data cannot be read)."""
    orders = orders_in(trials)
    if not orders:
        return [], None
    try:
        data = load_dataset(dataset)
    except DatasetError as err:
        return [], f"the recovered orders cannot be drawn: {err}"
    mean = data.x_train.mean(0).numpy()
    shape = tuple(data.input_shape)
    given = mean.reshape(shape[-2:]) if len(shape) == 3 and shape[0] == 1 else mean.reshape(-1)
    layouts = []
    for (method, order), count in sorted(orders.items(), key=lambda item: -item[1]):
        seen = mean.reshape(-1)[np.asarray(order)]
        recovered = seen.reshape(shape[-2:]) if method == "grid" and len(shape) == 3 else seen
        layouts.append(RecoveredLayout(method, count, given, recovered))
    return layouts, None


def layout_figure(layout: RecoveredLayout) -> go.Figure:
    """Side by side: the mean input as given and as the order reads it (heatmaps for 2D, lines for 1D)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean training input as given",
                                                        f"read through the '{layout.method}' order"))
    for col, values in ((1, layout.given), (2, layout.recovered)):
        if values.ndim == 2:
            fig.add_trace(go.Heatmap(z=values[::-1], colorscale="Greys", showscale=False), row=1, col=col)
            fig.update_xaxes(visible=False, row=1, col=col)
            fig.update_yaxes(visible=False, scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
        else:
            fig.add_trace(go.Scatter(y=values, mode="lines", line={"width": 1}, showlegend=False), row=1, col=col)
    fig.update_layout(height=320, margin={"l": 20, "r": 20, "t": 40, "b": 20}, template="plotly_white")
    return fig
