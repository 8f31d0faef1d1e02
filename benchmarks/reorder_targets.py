"""The reorder op's targets, measured: fixed zoo networks trained with and without an order recovered from data.

Usage: ``python benchmarks/reorder_targets.py [--part mnist1d|fashion|both] [--seeds N] [--write-findings]``

1. Shuffled MNIST-1D, the paper's protocol (150 epochs, lr 1e-2, batch 100, Adam-style optimizer): the zoo
   ``mnist1d-cnn`` (5,210 params) on unshuffled data, on data shuffled by two permutation seeds, and on the
   shuffled data read through the ``spectral`` and ``chain`` orders. The order is computed from the training split;
   a fresh permutation seed shows it is recovered from data, not from the seed.
2. Permuted Fashion-MNIST: LeNet-5 on unpermuted pixels, on permuted pixels, and on permuted pixels placed back
   on the 28x28 grid by the ``grid`` order: which share of the gap does the placement recover?

Every figure is test accuracy after the last epoch (no selection happens here: fixed networks, fixed epochs),
mean and sd over training seeds; the split is 80/20 train/val of the generator's 4,000 training samples for
MNIST-1D and 54,000/6,000 for Fashion-MNIST.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _results import write_section  # noqa: E402
from evaluators.datasets import default_cache_dir, load_dataset  # noqa: E402
from evaluators.ordering import (adjacent_neighbours, data_orders, feature_similarity, grid_neighbours,  # noqa: E402
                                 partial_similarity)
from evaluators.training import TrainConfig, train  # noqa: E402
from nas.cli.zoo import with_reorder  # noqa: E402
from search_space import get_zoo  # noqa: E402

FINDINGS = Path(__file__).resolve().parents[1] / "FINDINGS.md"
SECTION = "## Recovering the order of shuffled features (reorder op)"
FASHION_PERMUTED = {"name": "fashion-mnist", "val_fraction": 0.1, "seed": 42, "permute": True, "permute_seed": 1234321}


def run(zoo: str, spec: dict, method: str | None, seeds: int, config: dict) -> dict:
    """Test accuracies of zoo model ``zoo`` on ``spec``, read through the ``method`` order (None: as given)."""
    data = load_dataset(spec)
    genome = get_zoo(zoo).build(data.input_shape, data.num_classes)
    adjacency = None
    if method is not None:
        genome = with_reorder(genome, data, method)  # what `nas zoo train --reorder METHOD` runs
        order = np.asarray(next(d["order"] for _, d in genome.graph.nodes(data=True) if d.get("op") == "reorder"))
        if spec.get("permute"):  # where did each original pixel/feature land? neighbours kept side by side
            from evaluators.datasets import feature_permutation
            shuffle = feature_permutation(int(np.prod(data.input_shape)), spec["permute_seed"])
            adjacency = recovered_adjacency(order, shuffle, method, data.input_shape)
    accuracies = []
    for seed in range(seeds):
        result = train(genome, data, TrainConfig(**config, seed=seed, threads=2), evaluate_test=True)
        accuracies.append(float(result.test_accuracy))
        print(f"{zoo} {spec.get('permute') and spec.get('permute_seed')} {method}: seed {seed} "
              f"test {100 * result.test_accuracy:.2f}%", file=sys.stderr, flush=True)
    return {"zoo": zoo, "params": genome.params, "method": method or "none", "permuted": bool(spec.get("permute")),
            "permute_seed": spec.get("permute_seed") if spec.get("permute") else None, "test": accuracies,
            "adjacency": adjacency}


def recovered_adjacency(order: np.ndarray, shuffle: np.ndarray, method: str, shape) -> float:
    """Share of true neighbours (left-right along the signal, or on the grid) that the order puts side by side."""
    if method != "grid":
        return adjacent_neighbours(order, shuffle)
    return grid_neighbours(order, shuffle, *shape[-2:])


def ascii_image(values: np.ndarray) -> str:
    """A 2D array as text, darkest to brightest: how the recovered grid looks without a plotting stack."""
    shades = " .:-=+*#%@"
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high == low else (values - low) / (high - low)
    return "\n".join("".join(shades[min(9, int(v * 10))] * 2 for v in row) for row in scaled)


def recovered_grid_picture(data) -> str:
    """The mean permuted training image as given and read through the ``grid`` order, side by side as text."""
    shape = tuple(data.input_shape)
    order = np.asarray(data_orders(data.x_train.numpy(), ["grid"], shape, default_cache_dir())["grid"])
    mean = data.x_train.mean(0).numpy().reshape(-1)
    given, placed = ascii_image(mean.reshape(shape[-2:])), ascii_image(mean[order].reshape(shape[-2:]))
    # indented: a row may start with '#', and no line of a RESULTS/FINDINGS section may look like '## Title'
    return "\n".join(f"  {a}   {b}" for a, b in zip(given.splitlines(), placed.splitlines()))


def neighbour_ranks(data, permute_seed: int) -> str:
    """Why ``grid`` reads partial correlations: for plain and partial correlation, the share of pixels whose k-th
    strongest partner is a true grid neighbour (k = 1..4), and the median plain correlation between vertical and
    horizontal neighbours and between mirrored pixels (same row, reflected columns)."""
    from evaluators.datasets import feature_permutation
    x = data.x_train.numpy().reshape(len(data.x_train), -1)
    height, width = data.input_shape[-2:]
    rows, cols = np.divmod(feature_permutation(height * width, permute_seed), width)  # true cell of each
    plain = feature_similarity(x)
    lines = ["| similarity | 1st | 2nd | 3rd | 4th strongest partner a true neighbour |", "|---|---:|---:|---:|---:|"]
    for name, similarity in (("plain correlation", plain), ("partial correlation", partial_similarity(x))):
        partners = np.argsort(-similarity, axis=1, kind="stable")[:, :4]
        steps = np.abs(rows[:, None] - rows[partners]) + np.abs(cols[:, None] - cols[partners])
        lines.append(f"| {name} | " + " | ".join(f"{100 * np.mean(steps[:, k] == 1):.0f}%" for k in range(4)) + " |")
    at = np.empty((height, width), dtype=np.int64)
    at[rows, cols] = np.arange(height * width)  # the feature at each true cell
    down, across = plain[at[1:], at[:-1]], plain[at[:, 1:], at[:, :-1]]
    mirror = plain[at[:, : width // 2], at[:, ::-1][:, : width // 2]]
    lines += ["", f"Median plain correlation: vertical neighbours {np.median(down):.2f}, horizontal neighbours "
                  f"{np.median(across):.2f}, mirrored pixels (same row, columns reflected) {np.median(mirror):.2f}."]
    return "\n".join(lines)


def mnist1d_part(seeds: int) -> list[dict]:
    config = {"optimizer": "adamw", "lr": 1e-2, "batch_size": 100, "epochs": 150, "schedule": "constant"}
    base = {"name": "mnist1d", "num_samples": 5000, "seed": 42, "val_fraction": 0.2}
    rows = [run("mnist1d-cnn", base, None, seeds, config)]
    for permute_seed in (0, 2026):
        spec = {**base, "permute": True, "permute_seed": permute_seed}
        rows += [run("mnist1d-cnn", spec, method, seeds, config) for method in (None, "spectral", "chain")]
    return rows


def fashion_part(seeds: int, epochs: int = 5) -> list[dict]:
    config = {"optimizer": "adamw", "lr": 2e-3, "batch_size": 128, "epochs": epochs, "schedule": "cosine"}
    base = {"name": "fashion-mnist", "val_fraction": 0.1, "seed": 42}
    spec = FASHION_PERMUTED
    return [run("lenet5", base, None, seeds, config), run("lenet5", spec, None, seeds, config),
            run("lenet5", spec, "grid", seeds, config)]


def cell(row: dict) -> str:
    mean = 100 * statistics.fmean(row["test"])
    sd = 100 * statistics.stdev(row["test"]) if len(row["test"]) > 1 else 0.0
    return f"{mean:.1f}% ± {sd:.1f}"


def section(rows: list[dict], command: str, picture: str | None = None, ranks: str | None = None) -> str:
    lines = [SECTION, "", f"Command: `{command}` (the script's docstring gives the protocol)", "",
             "| network | params | data | read through | true neighbours side by side | test mean ± sd | seeds |",
             "|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        data = f"shuffled (seed {r['permute_seed']})" if r["permuted"] else "unshuffled"
        near = "-" if r["adjacency"] is None else f"{100 * r['adjacency']:.0f}%"
        lines.append(f"| {r['zoo']} | {r['params']:,} | {data} | {r['method']} | {near} | {cell(r)} | "
                     f"{len(r['test'])} |")
    by = {(r["zoo"], r["permuted"], r["method"]): statistics.fmean(r["test"]) for r in rows}
    if ("lenet5", True, "grid") in by:
        plain, shuffled, placed = by[("lenet5", False, "none")], by[("lenet5", True, "none")], by[("lenet5", True, "grid")]
        gap = plain - shuffled
        share = (placed - shuffled) / gap if gap > 0 else float("nan")
        lines += ["", f"LeNet-5 on Fashion-MNIST: the grid placement recovers {100 * share:.0f}% of the "
                      f"{100 * gap:.1f}-point gap between permuted and unpermuted pixels (target: at least 75%)."]
    if ranks:
        lines += ["", "Permuted Fashion-MNIST training images, what each similarity ranks first:", "", ranks]
    if picture:
        lines += ["", "The mean permuted training image as the data holds it (left) and read through the recovered "
                      "`grid` order (right):", "", "```", picture, "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["mnist1d", "fashion", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per row (default 3)")
    parser.add_argument("--write-findings", action="store_true", help=f"replace the section in {FINDINGS.name}")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    rows = (mnist1d_part(args.seeds) if args.part in ("mnist1d", "both") else []) + \
        (fashion_part(args.seeds) if args.part in ("fashion", "both") else [])
    picture = ranks = None
    if args.part in ("fashion", "both"):
        permuted = load_dataset(FASHION_PERMUTED)
        picture, ranks = recovered_grid_picture(permuted), neighbour_ranks(permuted, FASHION_PERMUTED["permute_seed"])
    command = "python benchmarks/reorder_targets.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = section(rows, command, picture, ranks)
    print(text)
    if args.write_findings:
        write_section(text, FINDINGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
