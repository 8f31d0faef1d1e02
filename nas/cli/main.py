"""The ``nas`` command: parses arguments, calls the packages, turns user errors into one line and exit 2."""
from __future__ import annotations

import argparse
import sys

from nas.cli import baseline, dashboard, export, findings, genome, report, run, status, zoo

# Each subcommand module exposes ``register(subparsers)`` and sets ``handler`` on its parsers.
COMMAND_MODULES = [run, status, baseline, findings, zoo, genome, report, export, dashboard]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Neural architecture search explorer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    from nas.errors import user_errors

    try:
        return int(args.handler(args) or 0)
    except user_errors() as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
