"""Training throughput on real images: one epoch of Fashion-MNIST, our trainer on a compiled genome against a
hand-written ``nn.Module`` and a minimal loop of the same network, side by side.

Usage: ``python benchmarks/throughput.py [--rounds N] [--train-samples N] [--json] [--write-results]``

Networks: LeNet-5, perm-cnn (784 permuted features as 56 channels x 14), a cycle(4)-grouped CNN, a Twist CNN and
a depthwise-separable CNN. Both contenders do the same work per epoch: a shuffled pass over the training split in
batches of 128 (AdamW, constant lr), then one pass over validation; ours is ``evaluators.training.train`` with
``epochs=1`` (its ``train_time_s``: model build, training, validation). Hand-written networks use plain torch only
and get the compiled network's weights, checked for equal outputs first. Contenders alternate round by round (order
swapped each round); the ratio hand/ours is the median of the per-round ratios (target >= 0.95). A last column
times one training step of each compiled network in ``channels_last`` against the default layout.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP: before the imports below

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)
from evaluators.datasets import Splits, load_dataset  # noqa: E402
from evaluators.training import TrainConfig, train  # noqa: E402
from search_space import Genome, build_model, get_zoo  # noqa: E402
from search_space.layers import SOBEL_X, SOBEL_Y, Permute, group_channel_order  # noqa: E402

THREADS = 2
BATCH = 128
TARGET = 0.95
SECTION = "## Training throughput (Fashion-MNIST)"


# -- the three genomes that are not in the zoo: one design each, LeNet-sized --------------------------------


def small_cnn(conv: str, **attrs) -> Genome:
    """1x28x28 -> conv 16 k3 -> pool -> ``conv`` 32 -> pool -> ``conv`` 64 -> GAP -> dense 10 (ReLU after each)."""
    g = Genome()
    x = g.add("input", "input", shape=[1, 28, 28])
    x = g.chain(x, [("stem", "conv", {"out_channels": 16, "kernel": 3, "padding": "same"}),
                    ("relu0", "act", {"fn": "relu"}), ("pool0", "pool", {"kind": "max", "kernel": 2})])
    for i, width in enumerate((32, 64), start=1):
        x = g.chain(x, [(f"conv{i}", conv, {"out_channels": width, **attrs}), (f"relu{i}", "act", {"fn": "relu"})])
        if i == 1:
            x = g.add("pool1", "pool", [x], kind="max", kernel=2)
    x = g.chain(x, [("gap", "global_pool", {"kind": "avg"}), ("logits", "dense", {"out_features": 10})])
    g.add("output", "output", [x])
    return g.validate()


GENOMES: dict[str, Callable[[], Genome]] = {
    "lenet5": lambda: get_zoo("lenet5").build((1, 28, 28), 10),
    "perm-cnn (784)": lambda: get_zoo("perm-cnn").build((1, 28, 28), 10),
    "cycle(4) grouped": lambda: small_cnn("conv", kernel=3, padding="same", groups=4, pattern="cycle", cycle=4),
    "twist": lambda: small_cnn("twist_conv"),
    "separable": lambda: small_cnn("separable_conv", kernel=3, padding="same"),
}


# -- the same networks by hand, plain torch -------------------------------------------------------------------


class HandLeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 6, 5, padding=2, bias=False)
        self.conv1 = nn.Conv2d(6, 16, 5, bias=False)
        self.fc = nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv0(x)), 2)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(x.flatten(1))


class HandPermCNN(nn.Module):
    """784 features as (56, 14); Conv1d k5 strides 2, 2, 3 with fixed position permutations and dropout between."""

    def __init__(self, perms: list[torch.Tensor]):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(56, 64, 5, 2, 2), nn.Conv1d(64, 64, 5, 2, 2), nn.Conv1d(64, 64, 5, 3, 2)])
        self.perms = perms
        self.logits = nn.Linear(128, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], 56, 14)
        for conv, perm in zip(self.convs[:2], self.perms):
            x = F.dropout(F.relu(conv(x))[:, :, perm], 0.25, self.training)
        return self.logits(F.relu(self.convs[2](x)).flatten(1))


class HandSmallCNN(nn.Module):
    """The ``small_cnn`` layout with the middle convs given as modules (grouped with a gather, Twist, separable)."""

    def __init__(self, middle: list[nn.Module]):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.middle = nn.ModuleList(middle)
        self.logits = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        x = F.max_pool2d(F.relu(self.middle[0](x)), 2)
        x = F.relu(self.middle[1](x))
        return self.logits(x.mean((2, 3)))


class HandGrouped(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.register_buffer("order", group_channel_order(cin, 4, "cycle", 4))
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, groups=4)

    def forward(self, x):
        return self.conv(x[:, self.order])


class HandTwist(nn.Module):
    """ConvTwist: conv(x; W) + X * conv(x; Kx) + Y * conv(x; Ky), Kx = ax * Sobel_x + ay * Sobel_y, Ky its rot90."""

    def __init__(self, cin: int, cout: int, size: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.ax, self.ay = nn.Parameter(torch.zeros(cout, cin)), nn.Parameter(torch.zeros(cout, cin))
        line = torch.linspace(-1.0, 1.0, size)
        self.register_buffer("xs", line.view(1, -1).expand(size, size).contiguous())
        self.register_buffer("ys", line.view(-1, 1).expand(size, size).contiguous())
        self.register_buffer("sx", torch.tensor(SOBEL_X))
        self.register_buffer("sy", torch.tensor(SOBEL_Y))

    def forward(self, x):
        kx = self.ax[:, :, None, None] * self.sx + self.ay[:, :, None, None] * self.sy
        ky = kx.transpose(2, 3).flip(3)
        return self.conv(x) + self.xs * F.conv2d(x, kx, padding=1) + self.ys * F.conv2d(x, ky, padding=1)


class HandSeparable(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def hand_network(name: str, compiled: nn.Module) -> nn.Module:
    if name == "lenet5":
        return HandLeNet5()
    if name.startswith("perm-cnn"):
        return HandPermCNN([m.index for m in compiled.modules() if isinstance(m, Permute)])
    middle = {"cycle(4) grouped": lambda i, o, s: HandGrouped(i, o), "twist": HandTwist,
              "separable": lambda i, o, s: HandSeparable(i, o)}[name]
    return HandSmallCNN([middle(16, 32, 14), middle(32, 64, 7)])


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Parameters in registration order, shapes checked."""
    pairs = list(zip(src.parameters(), dst.parameters()))
    if len(pairs) != len(list(dst.parameters())) or any(s.shape != d.shape for s, d in pairs):
        raise RuntimeError(f"{type(dst).__name__}: parameters differ from the compiled network's")
    with torch.no_grad():
        for s, d in pairs:
            d.copy_(s)


def check_parity(name: str, compiled: nn.Module, hand: nn.Module, x: torch.Tensor) -> float:
    compiled.eval(), hand.eval()
    with torch.no_grad():
        diff = float((compiled(x) - hand(x)).abs().max())
    if not diff <= 1e-4:
        raise RuntimeError(f"{name}: hand-written and compiled networks differ by {diff:.3g}")
    return diff


# -- the two training loops ---------------------------------------------------------------------------------


def ours(genome: Genome, data: Splits, seed: int) -> float:
    config = TrainConfig(optimizer="adamw", lr=1e-3, batch_size=BATCH, epochs=1, schedule="constant", seed=seed)
    result = train(genome, data, config, evaluate_test=False)
    return result.train_time_s


def minimal_loop(model: nn.Module, data: Splits, seed: int) -> float:
    """What a user writes: shuffle, index the in-memory tensors, step; then one validation pass."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    order = torch.randperm(len(data.x_train))
    for step in range(len(order) // BATCH):
        idx = order[step * BATCH:(step + 1) * BATCH]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(xb).argmax(1) == yb).sum())
                      for xb, yb in zip(data.x_val.split(1000), data.y_val.split(1000)))
    assert 0 <= correct <= len(data.y_val)
    return time.perf_counter() - started


def layout_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 5) -> float:
    """Time of a training step in the default layout over the same step in channels_last (> 1: channels_last wins)."""
    def step(inputs: torch.Tensor) -> float:
        start = time.perf_counter()
        F.cross_entropy(model(inputs), y).backward()
        return time.perf_counter() - start

    model.train()
    last = x.contiguous(memory_format=torch.channels_last)
    step(x), step(last)
    pairs = [(step(x), step(last)) for _ in range(repeats)]
    return statistics.median(a / b for a, b in pairs)


def measure(rounds: int, train_samples: int | None, networks: list[str] | None = None) -> dict:
    torch.set_num_threads(THREADS)
    spec = {"name": "fashion-mnist", "val_fraction": 0.1, "seed": 42}
    plain = load_dataset({**spec, **({"train_samples": train_samples} if train_samples else {})})
    permuted = load_dataset({**spec, "permute": True, "permute_seed": 1234321,
                             **({"train_samples": train_samples} if train_samples else {})})
    rows = []
    for name, make in GENOMES.items():
        if networks and name not in networks:
            continue
        data = permuted if name.startswith("perm-cnn") else plain
        genome = make()
        torch.manual_seed(0)
        compiled = build_model(genome)
        hand = hand_network(name, compiled)
        copy_weights(compiled, hand)
        diff = check_parity(name, compiled, hand, data.x_val[:64])
        small = dataclasses.replace(data, x_train=data.x_train[:512], y_train=data.y_train[:512],
                                    x_val=data.x_val[:256], y_val=data.y_val[:256])
        ours(genome, small, seed=0), minimal_loop(hand_network(name, build_model(genome)), small, seed=0)  # warm-up
        ours_s, hand_s = [], []
        for r in range(rounds):
            first, second = (("ours", "hand") if r % 2 == 0 else ("hand", "ours"))
            for who in (first, second):
                if who == "ours":
                    ours_s.append(ours(genome, data, seed=r))
                else:
                    torch.manual_seed(r)
                    fresh = hand_network(name, build_model(genome))
                    hand_s.append(minimal_loop(fresh, data, seed=r))
        ratio = statistics.median(h / o for h, o in zip(hand_s, ours_s))
        x, y = data.x_train[:BATCH], data.y_train[:BATCH]
        layout = layout_ratio(build_model(genome), x, y) if len(data.input_shape) == 3 else None
        n = len(data.x_train)
        rows.append({"network": name, "params": genome.params, "train_images": n,
                     "ours_epoch_s": statistics.median(ours_s), "hand_epoch_s": statistics.median(hand_s),
                     "ours_images_per_s": n / statistics.median(ours_s),
                     "hand_images_per_s": n / statistics.median(hand_s), "ratio": ratio,
                     "channels_last_speedup": layout, "max_abs_diff": diff, "epochs_ours": ours_s,
                     "epochs_hand": hand_s})
        print(f"{name}: ours {statistics.median(ours_s):.2f}s, hand {statistics.median(hand_s):.2f}s, "
              f"ratio {ratio:.3f}", file=sys.stderr, flush=True)
    return {"rows": rows, "rounds": rounds, "threads": THREADS, "machine": machine()}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown CPU") if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {THREADS} threads"


def section(result: dict, command: str) -> str:
    lines = [SECTION, "", f"Command: `{command}`", "",
             f"Machine: {result['machine']}. {result['rounds']} rounds per network, contenders alternating; one "
             "epoch = a shuffled pass over the training split (batch 128, AdamW) plus one validation pass. Ratio = "
             "median over rounds of hand-written time / ours (target >= 0.95). channels_last = time of a training "
             "step in the default layout / in channels_last (> 1 would favour channels_last).", "",
             "| network | params | train images | ours epoch (s) | hand epoch (s) | ours images/s | ratio | "
             "channels_last |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        layout = "-" if r["channels_last_speedup"] is None else f"{r['channels_last_speedup']:.2f}"
        verdict = "" if r["ratio"] >= TARGET else " (below target)"
        lines.append(f"| {r['network']} | {r['params']:,} | {r['train_images']:,} | {r['ours_epoch_s']:.2f} | "
                     f"{r['hand_epoch_s']:.2f} | {r['ours_images_per_s']:,.0f} | {r['ratio']:.3f}{verdict} | "
                     f"{layout} |")
    worst = min(result["rows"], key=lambda r: r["ratio"])
    lines += ["", f"Lowest ratio: {worst['network']} at {worst['ratio']:.3f} (target {TARGET})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="epochs per contender and network (default 3)")
    parser.add_argument("--train-samples", type=int, help="train on this many images (default: all 54,000)")
    parser.add_argument("--networks", nargs="+", choices=list(GENOMES), help="only these networks (default: all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION[3:]}' section")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.train_samples, args.networks)
    text = section(result, "python benchmarks/throughput.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(json.dumps(result, indent=2) if args.json else text)
    if args.write_results:
        write_section(text)
    return 0 if min(r["ratio"] for r in result["rows"]) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
