"""Shared printing for commands: JSON for machines, rich tables for people."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from search_space import Genome

console = Console(width=None if sys.stdout.isatty() else 140)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def genome_report(genome: Genome, name: str) -> dict:
    """Plain data about a genome: totals and one row per node."""
    info = genome.analyze()
    return {
        "name": name,
        "params": genome.params,
        "flops": genome.flops,
        "input_shape": list(genome.input_shape),
        "classes": genome.num_classes,
        "key": genome.key(),
        "summary": genome.summary(),
        "layers": [{"node": n.name, "op": n.op, "inputs": list(n.inputs), "shape": list(n.shape),
                    "params": n.params, "flops": n.flops} for n in info.values()],
    }


def print_genome(report: dict) -> None:
    table = Table(title=f"{report['name']}  ({report['summary']})", title_justify="left")
    for column, justify in [("node", "left"), ("op", "left"), ("output shape", "left"), ("params", "right"),
                            ("FLOPs (MACs)", "right")]:
        table.add_column(column, justify=justify)
    for layer in report["layers"]:
        table.add_row(layer["node"], layer["op"], "x".join(map(str, layer["shape"])), f"{layer['params']:,}",
                      f"{layer['flops']:,}")
    table.add_section()
    table.add_row("total", "", "", f"{report['params']:,}", f"{report['flops']:,}")
    console.print(table)
    console.print(f"key {report['key']}")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_summary(summary: dict) -> None:
    """A study summary (``nas.study.summary.study_summary``) as tables, its headline and failures."""
    counts = summary["trials"]
    console.print(f"study [bold]{summary['study']}[/bold]: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f"; hypervolume {summary['hypervolume']:.3f}")
    if summary.get("screen"):
        screen = summary["screen"]
        console.print(f"screen: {screen['screened']} trial(s) screened, {screen['stopped']} stopped there, "
                      f"{screen['screened'] - screen['stopped']} went on to the full fit")
    for title, rows in (("Pareto set", summary["pareto"]), ("dense baseline front", summary["baseline"])):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for column in ("trial", "val acc", "test acc", "params", "FLOPs", "epochs", "genome"):
            table.add_column(column, justify="left" if column == "genome" else "right")
        for r in rows:
            table.add_row(str(r["number"]), _pct(r["val_accuracy"]), _pct(r["test_accuracy"]), f"{r['params']:,}",
                          f"{r['flops']:,}", str(r["epochs"]), (r["zoo"] + ": " if r["zoo"] else "") + r["summary"])
        console.print(table)
    if summary["baseline"]:
        console.print(summary["headline"])
    if summary.get("search_note"):
        console.print(summary["search_note"])
    for failure in summary["failures"][:10]:
        console.print(f"[red]trial {failure['number']} failed[/red]: {failure['reason']}")
