"""``nas status STUDY_OR_YAML``: counts by state, the Pareto set, the dense baseline's front, failures."""
from __future__ import annotations

import argparse

from nas.cli.output import print_json, print_summary
from nas.cli.target import add_storage_argument, resolve_target


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="state counts and the Pareto set of a study")
    status.add_argument("study", help="study YAML file or study name")
    status.add_argument("--json", action="store_true")
    add_storage_argument(status)
    status.set_defaults(handler=status_command)


def status_command(args: argparse.Namespace) -> int:
    from nas.study.storage import load_with_baseline
    from nas.study.summary import study_summary

    name, url, _ = resolve_target(args.study, args.storage)
    summary = study_summary(*load_with_baseline(name, url))
    print_json(summary) if args.json else print_summary(summary)
    return 0
