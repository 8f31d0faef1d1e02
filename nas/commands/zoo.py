"""``nas zoo list | show``: the seeds' architectures as genomes."""
from __future__ import annotations

import argparse

from nas.commands.output import console, genome_report, print_genome, print_json
from nas.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    zoo = sub.add_parser("zoo", help="the seeds' architectures as genomes")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    listing = zoo_sub.add_parser("list", help="list zoo models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_models)
    show = zoo_sub.add_parser("show", help="layers, shapes, params and FLOPs of a zoo model")
    show.add_argument("name")
    shape = show.add_mutually_exclusive_group()
    shape.add_argument("--features", type=int, help="flat input with F features")
    shape.add_argument("--input-shape", help="input shape without batch, e.g. 3,32,32 or 1,40")
    show.add_argument("--classes", type=int, help="number of classes (default: the seed's)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_model)


def parse_shape(text: str | None, features: int | None) -> tuple[int, ...] | None:
    """``3,32,32`` -> (3, 32, 32); ``--features F`` -> (F,)."""
    if features is not None:
        return (features,)
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input-shape must be comma-separated integers like 3,32,32, got {text!r}") from None
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ConfigError(f"--input-shape must have 1 to 3 positive sizes, got {text!r}")
    return shape


def list_models(args: argparse.Namespace) -> int:
    from search_space.zoo import ZOO

    rows = []
    for entry in ZOO.values():
        genome = entry.build()
        rows.append({"name": entry.name, "params": genome.params, "flops": genome.flops,
                     "input_shape": list(entry.input_shape), "classes": entry.classes, "what": entry.what})
    if args.json:
        print_json(rows)
        return 0
    from rich.table import Table

    table = Table("name", "input", "params", "FLOPs", "what")
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}", f"{r['flops']:,}", r["what"])
    console.print(table)
    return 0


def show_model(args: argparse.Namespace) -> int:
    from search_space.zoo import get_zoo

    genome = get_zoo(args.name).build(parse_shape(args.input_shape, args.features), args.classes)
    report = genome_report(genome, args.name)
    print_json(report) if args.json else print_genome(report)
    return 0
