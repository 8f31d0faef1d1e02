"""``nas zoo list | show | train``: the seeds' architectures as genomes."""
from __future__ import annotations

import argparse

from nas.cli.output import console, genome_report, print_genome, print_json
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
    fit = zoo_sub.add_parser("train", help="train a zoo model on a dataset and print its results")
    fit.add_argument("name")
    fit.add_argument("--dataset", required=True, help="mnist1d, mnist1d:permute, digits, or a YAML/JSON spec file")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--lr", type=float, default=1e-2)
    fit.add_argument("--batch-size", type=int, default=100)
    fit.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    fit.add_argument("--reorder", choices=["spectral", "chain", "grid"],
                     help="put the features in an order recovered from the training split first (reorder op)")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(handler=train_model)


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


def train_model(args: argparse.Namespace) -> int:
    from evaluators.datasets import load_dataset
    from evaluators.training import TrainConfig, train
    from search_space.zoo import get_zoo

    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    data = load_dataset(args.dataset)
    genome = get_zoo(args.name).build(data.input_shape, data.num_classes)
    if args.reorder:
        genome = with_reorder(genome, data, args.reorder)
    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                         seed=args.seed)
    progress = None if args.json else (lambda r: console.print(
        f"epoch {r.epoch:3d}  train loss {r.train_loss:.4f}  val loss {r.val_loss:.4f}  "
        f"val acc {100 * r.val_accuracy:.2f}%  {r.elapsed_s:.1f}s"))
    result = train(genome, data, config, callback=progress)
    report = {"name": args.name, "dataset": data.spec.to_dict(), **result.to_dict()}
    if args.json:
        print_json(report)
    else:
        console.print(f"{args.name}: val {100 * result.val_accuracy:.2f}%, test {100 * result.test_accuracy:.2f}%, "
                      f"{result.params:,} params, {result.epochs} epochs, {result.train_time_s:.1f}s")
        if result.stopped:
            console.print(f"[red]stopped[/red]: {result.reason}")
    return 0


def with_reorder(genome, data, method: str):
    """``genome`` reading the data through the order ``method`` recovers from the training split."""
    from evaluators.datasets import default_cache_dir
    from evaluators.ordering import data_orders
    from nas.search.genomes import image_shape_of

    shape = tuple(data.input_shape)
    image = image_shape_of(shape) if method == "grid" else None
    if method == "grid" and (image is None or image != shape):
        raise ConfigError(f"--reorder grid: needs an image input (C, H, W), the data has shape {list(shape)}")
    if method != "grid" and len(shape) > 1 and shape[0] > 1:
        raise ConfigError(f"--reorder {method}: orders flat or one-channel features, the data has shape "
                          f"{list(shape)}; use --reorder grid for images")
    order = data_orders(data.x_train.numpy(), [method], image, default_cache_dir())[method]
    return genome.insert_after(genome.input_node, "reorder", "reorder", order=order, method=method).validate()
