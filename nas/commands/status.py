"""``nas status STUDY_OR_YAML``: counts by state, the Pareto set, the dense baseline's front, failures."""
from __future__ import annotations

import argparse

from nas.commands.output import console, print_json
from nas.commands.target import add_storage_argument, resolve_target


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="state counts and the Pareto set of a study")
    status.add_argument("study", help="study YAML file or study name")
    status.add_argument("--json", action="store_true")
    add_storage_argument(status)
    status.set_defaults(handler=status_command)


def load_with_baseline(target: str, storage: str | None):
    """The study and its dense baseline (None if it has none) from the storage."""
    from nas.storage import load_study
    from nas.summary import baseline_study_name

    name, url, _ = resolve_target(target, storage)
    study = load_study(name, url)
    baseline_name = baseline_study_name(study)
    baseline = load_study(baseline_name, url) if baseline_name else None
    return study, baseline


def status_command(args: argparse.Namespace) -> int:
    from nas.summary import study_summary

    study, baseline = load_with_baseline(args.study, args.storage)
    summary = study_summary(study, baseline)
    print_json(summary) if args.json else print_summary(summary)
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_summary(summary: dict) -> None:
    from rich.table import Table

    counts = summary["trials"]
    console.print(f"study [bold]{summary['study']}[/bold]: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f"; hypervolume {summary['hypervolume']:.3f}")
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
    best_dense = max(summary["baseline"], key=lambda r: r["val_accuracy"], default=None)
    if best_dense is not None:
        beating = [r for r in summary["pareto"] if r["val_accuracy"] > best_dense["val_accuracy"]
                   and r["params"] < best_dense["params"]]
        if beating:
            smallest = min(beating, key=lambda r: r["params"])
            console.print(f"trial {smallest['number']} beats the best dense baseline ({_pct(best_dense['val_accuracy'])}, "
                          f"{best_dense['params']:,} params) with {_pct(smallest['val_accuracy'])} and "
                          f"{smallest['params']:,} params (1/{best_dense['params'] / smallest['params']:.1f} of its size)")
        else:
            console.print(f"no searched genome beats the best dense baseline ({_pct(best_dense['val_accuracy'])}, "
                          f"{best_dense['params']:,} params) with fewer parameters yet")
    for failure in summary["failures"][:10]:
        console.print(f"[red]trial {failure['number']} failed[/red]: {failure['reason']}")
