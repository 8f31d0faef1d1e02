"""``nas genome show FILE.json``: validate a genome file and print its layers and costs."""
from __future__ import annotations

import argparse

from nas.cli.output import genome_report, print_genome, print_json


def register(sub: argparse._SubParsersAction) -> None:
    genome = sub.add_parser("genome", help="inspect genome files")
    genome_sub = genome.add_subparsers(dest="genome_command", required=True, metavar="ACTION")
    show = genome_sub.add_parser("show", help="validate a genome JSON file and print its summary")
    show.add_argument("file")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_genome)


def show_genome(args: argparse.Namespace) -> int:
    from search_space import Genome

    genome = Genome.load(args.file).validate()
    report = genome_report(genome, args.file)
    print_json(report) if args.json else print_genome(report)
    return 0
