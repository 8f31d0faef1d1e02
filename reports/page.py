"""One self-contained ``index.html`` (plotly.js embedded once, no network) and the optional ``pareto.png``."""
from __future__ import annotations

import html
import os
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from reports import figures
from reports.choices import ABSENT
from reports.data import ParetoDetail, ReportData, TrialPoint
from reports.findings import Findings, ratio_words
from reports.layout import layout_figure

CHROMIUM = "/usr/bin/chromium"  # Debian's; kaleido finds a Chrome on PATH otherwise
TABLE_WIDTHS = ("56px", "150px", "72px", "72px", "84px", "96px", "60px", "auto")  # so both tables line up
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"scale": 2}}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid #ddd;
  padding-bottom: 4px; } h3 { font-size: 16px; margin: 0 0 6px; }
.meta { color: #666; font-size: 13px; }
.live { color: #8a5a00; font-size: 14px; margin: 8px 0 0; }
.note { color: #666; font-size: 14px; font-style: italic; }
.card { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 14px 16px; margin: 14px 0; }
.plot { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; margin: 10px 0; }
.pair { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 12px; align-items: start; }
.pair .plot { border: none; margin: 0; }
table { border-collapse: collapse; font-size: 13px; background: #fff; width: 100%; table-layout: fixed; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td.genome, th.genome { text-align: left; white-space: normal; font-family: ui-monospace,
  monospace; font-size: 12px; word-break: break-all; } td.left, th.left { text-align: left; }
code { background: #f2f2f2; padding: 2px 6px; border-radius: 3px; font-size: 13px; user-select: all; }
.summary { font-family: ui-monospace, monospace; font-size: 12px; color: #555; word-break: break-all; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 5px; }
@media (max-width: 800px) { .pair { grid-template-columns: 1fr; } }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def plot_div(fig: go.Figure | None, div_id: str, note: str | None = None) -> str:
    """A figure as a div that uses the page's one copy of plotly.js; ``note`` (in italics) when there is none."""
    if fig is None:
        return f"<p class='note'>{_e(note or 'nothing to show yet')}</p>"
    return "<div class='plot'>" + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                              config=PLOT_CONFIG) + "</div>"


def trial_table(points: list[TrialPoint], link: bool) -> str:
    """The compact table of a front: one row per trial, by increasing params."""
    widths = "".join(f"<col style='width:{w}'>" for w in TABLE_WIDTHS)
    head = (f"<colgroup>{widths}</colgroup><tr><th>trial</th><th class='left'>family</th><th>val acc</th>"
            "<th>test acc</th><th>params</th><th>FLOPs</th><th>epochs</th><th class='genome'>genome</th></tr>")
    rows = []
    for p in sorted(points, key=lambda p: p.params):
        number = f"<a href='#trial-{p.number}'>{p.number}</a>" if link else str(p.number)
        swatch = f"<span class='swatch' style='background:{figures.family_color(p.family)}'></span>"
        zoo = f"<b>{_e(p.zoo)}</b>: " if p.zoo else ""
        rows.append(f"<tr><td>{number}</td><td class='left'>{swatch}{_e(p.family)}</td><td>{_pct(p.val_accuracy)}</td>"
                    f"<td>{_pct(p.test_accuracy)}</td><td>{p.params:,}</td>"
                    f"<td>{'–' if p.flops is None else f'{p.flops:,}'}</td><td>{p.epochs}</td>"
                    f"<td class='genome'>{zoo}{_e(p.summary)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def detail_card(detail: ParetoDetail) -> str:
    """One Pareto trial: numbers, genome summary, export command, learning curve beside the genome graph."""
    p = detail.point
    n = p.number
    zoo = f" · zoo model <b>{_e(p.zoo)}</b>" if p.zoo else ""
    graph = figures.genome_figure(detail.drawing, figures.family_color(p.family))
    return (f"<div class='card' id='trial-{n}'><h3>Trial {n} · {_e(p.family)}{zoo}</h3>"
            f"<div class='meta'>val {_pct(p.val_accuracy)} · test {_pct(p.test_accuracy)} · {p.params:,} params · "
            f"{'?' if p.flops is None else f'{p.flops:,}'} FLOPs · {p.epochs} epochs</div>"
            f"<p class='summary'>{_e(p.summary)}</p><p>Export: <code>{_e(detail.export_command)}</code></p>"
            f"<div class='pair'>{plot_div(figures.curve_figure(detail), f'curve-{n}')}"
            f"{plot_div(graph, f'genome-{n}', detail.drawing.note)}</div></div>")


def findings_section(found: Findings | None) -> str:
    """The findings as tables (``reports/findings.py``): validation accuracy only."""
    if found is None or not found.trained_trials:
        return "<p class='note'>No trained trial yet.</p>"
    rows = "".join(f"<tr><td class='left'>{_e(r.choice)}</td><td>{r.with_trials}</td><td>{r.without_trials}</td>"
                   f"<td>{r.hv_with:.3f}</td><td>{r.hv_without:.3f}</td></tr>"
                   for r in sorted(found.choices, key=lambda r: r.hv_without - r.hv_with))
    choices = ("<p class='note'>Hypervolume of the front built only from the trained trials that make a choice, "
               "against the front of those that do not.</p><table><tr><th class='left'>choice</th><th>trials with"
               f"</th><th>without</th><th>HV with</th><th>HV without</th></tr>{rows}</table>") if rows else \
        "<p class='note'>Every trained trial made the same choices so far: nothing to compare.</p>"
    budgets = sorted({b for row in found.best_within_budgets.values() for b in row})
    cells = "".join(f"<tr><td class='left'>{_e(family)}</td>" + "".join(
        f"<td>{_pct(row[b]) if b in row else '–'}</td>" for b in budgets) + "</tr>"
        for family, row in found.best_within_budgets.items())
    table = ("<h3>Best val accuracy within a parameter budget</h3><table><tr><th class='left'>family</th>"
             + "".join(f"<th>≤ {b:,}</th>" for b in budgets) + f"</tr>{cells}</table>")
    ratios = "".join(f"<li>dense {_pct(a)} with {p:,} params: a searched genome with {s:,} ({ratio_words(r)})</li>"
                     for a, p, s, r in found.ratios)
    matched = (f"<h3>Parameters at matched accuracy</h3><ul>{ratios}</ul>" if ratios else
               "<p class='note'>No point of the dense front is reached by a searched trial yet.</p>")
    return choices + table + matched


def final_section(data: ReportData) -> str:
    """`nas findings --final`: the only test accuracies chosen for a result (retrained on train+val, per seed)."""
    if not data.final:
        return ("<p class='note'>Not run yet: <code>nas findings STUDY.yaml --final</code> retrains the chosen "
                "genomes on train+val with 3 seeds and reports test accuracy.</p>")
    rows = "".join(f"<tr><td class='left'>{_e(r.source)}</td><td>{r.trial}</td><td class='left'>{_e(r.label)}</td>"
                   f"<td>{r.params:,}</td><td>{_pct(r.val_accuracy)}</td><td>{100 * r.test_mean:.2f}% ± "
                   f"{100 * r.test_sd:.2f}</td></tr>" for r in data.final)
    return (f"<table><tr><th class='left'>source</th><th>trial</th><th class='left'>what</th><th>params</th>"
            f"<th>val (search)</th><th>test mean ± sd ({len(data.final[0].test_accuracies)} seeds)</th></tr>"
            f"{rows}</table>")


def layout_section(data: ReportData) -> str:
    """The mean training input before and after each recovered order (``reports/layout.py``)."""
    if data.layout_note:
        return f"<p class='note'>{_e(data.layout_note)}</p>"
    return "".join(f"<p class='note'>'{_e(l.method)}' order, used by {l.trials} trained trial(s).</p>"
                   + plot_div(layout_figure(l), f"layout-{i}") for i, l in enumerate(data.layouts))


def render(data: ReportData) -> str:
    """The whole page as one HTML string."""
    counts = ", ".join(f"{v} {k}" for k, v in data.counts.items())
    running = data.counts.get("running", 0)
    live = (f"<p class='live'>The study is still running ({running} trial(s) in progress): run "
            "<code>nas report</code> again for newer results.</p>") if running else ""
    baseline = f"dense baseline study <b>{_e(data.baseline_study)}</b>" if data.baseline_study \
        else "no dense baseline study"
    sections = [
        f"<h1>NAS report: {_e(data.study)}</h1>",
        (f"<div class='meta'>{_e(data.storage)} · {baseline} · trials: {_e(counts)} · generated "
         f"{_e(data.generated)}</div>{live}"),
        f"<p class='note'>{_e(data.search_note)}</p>" if data.search_note else "",
        "<h2>1. Pareto front: accuracy against parameters</h2>",
        ("<p class='note'>Hover a point for its genome. Pruned trials are faint, at the accuracy they had reached; "
         "hollow circles are the Pareto set's test accuracy. Click legend entries to hide them.</p>"),
        plot_div(figures.pareto_figure(data), "pareto"),
        "<h3>Pareto set</h3>",
        trial_table(data.pareto, link=True) if data.pareto else "<p class='note'>No trained trial yet.</p>",
    ]
    if data.baseline_front:
        sections += ["<h3 style='margin-top:16px'>Dense baseline front</h3>", trial_table(data.baseline_front, False)]
    hv = data.hypervolume
    sections += [
        "<h2>2. Hypervolume</h2>",
        (f"<p class='note'>Area dominated in (val accuracy, −log10 params) above (0, {hv.params_reference:,.0f} "
         "params), over the trained trials so far.</p>"),
        plot_div(figures.hypervolume_figure(hv) if hv.numbers else None, "hypervolume"),
        "<h2>3. Which choices matter</h2>",
        plot_div(figures.importance_figure(data.choices), "importances", data.choices.note),
        (f"<p class='note'>Each line is one of the {len(data.choices.trials)} trained trials with sampled choices "
         f"(zoo models have none), coloured by val accuracy; {ABSENT} marks a choice the trial did not make.</p>")
        if len(data.choices.trials) > 1 else "",
        plot_div(figures.choices_figure(data.choices), "choices",
                 "The parallel-coordinates view needs two trained trials with sampled choices."),
        "<h2>4. Which designs buy accuracy per parameter</h2>",
        findings_section(data.findings),
        "<h3>Final table: test accuracy after retraining</h3>",
        final_section(data),
        *(["<h3>Recovered feature order</h3>", layout_section(data)] if data.layouts or data.layout_note else []),
        "<h2>5. The Pareto trials</h2>",
        *(detail_card(d) for d in data.details),
    ]
    if not data.details:
        sections.append("<p class='note'>No trained trial yet.</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(data.study)} · NAS report"
            f"</title><style>{CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head>"
            f"<body><main>{''.join(sections)}</main></body></html>")


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Writes ``out_dir/index.html`` and returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(render(data), encoding="utf-8")
    return path


def write_png(fig: go.Figure, path: Path) -> str | None:
    """Renders ``fig`` to PNG with kaleido (Debian Chromium if present); returns why not, or None on success."""
    try:
        import kaleido
    except ImportError:
        return "kaleido is not installed (pip install kaleido)"
    kopts = {"mathjax": False, "path": CHROMIUM} if os.path.exists(CHROMIUM) else {"mathjax": False}
    try:
        image = kaleido.calc_fig_sync(fig, opts={"format": "png", "width": 1100, "height": 560, "scale": 2},
                                      kopts=kopts)
    except Exception as exc:  # noqa: BLE001 (kaleido and choreographer raise many types; the HTML stands regardless)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"kaleido could not render ({type(exc).__name__}: {first[:200]})"
    path.write_bytes(image)
    return None
