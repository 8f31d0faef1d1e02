"""``nas report STUDY_OR_YAML``: one self-contained HTML page from the storage (and ``pareto.png`` with --png)."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli.output import console
from nas.cli.target import add_storage_argument, resolve_target


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write an interactive HTML report of a study (works while it runs)")
    report.add_argument("study", help="study YAML file or study name")
    report.add_argument("--out", type=Path, help="output folder (default: reports/<study>/)")
    report.add_argument("--png", action="store_true", help="also write pareto.png (needs kaleido and Chrome)")
    add_storage_argument(report)
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    from nas.study.storage import load_with_baseline
    from reports.data import report_data
    from reports.figures import pareto_figure
    from reports.page import write_png, write_report

    name, url, _ = resolve_target(args.study, args.storage)
    study, baseline = load_with_baseline(name, url)
    data = report_data(study, baseline, target=args.study, storage=args.storage, url=url)
    out = args.out or Path("reports") / study.study_name
    page = write_report(data, out)
    console.print(f"wrote {page} ({len(data.points)} finished trials, Pareto set of {len(data.pareto)})")
    if args.png:
        why = write_png(pareto_figure(data), out / "pareto.png")
        console.print(f"wrote {out / 'pareto.png'}" if why is None else f"no pareto.png: {why}; the HTML is complete")
    return 0
