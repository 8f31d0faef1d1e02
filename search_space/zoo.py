"""The seeds' architectures as genome builders, each with its seed's default input shape and classes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from search_space.errors import GenomeError
from search_space.genome import Genome


@dataclass(frozen=True)
class ZooEntry:
    """A named builder ``(input_shape, classes) -> Genome`` with its seed's defaults."""

    name: str
    what: str
    input_shape: tuple[int, ...]
    classes: int
    builder: Callable[[tuple[int, ...], int], Genome]

    def build(self, input_shape: Sequence[int] | None = None, classes: int | None = None) -> Genome:
        shape = tuple(input_shape) if input_shape else self.input_shape
        return self.builder(shape, classes or self.classes).validate()


ZOO: dict[str, ZooEntry] = {}


def zoo_model(name: str, what: str, input_shape: tuple[int, ...], classes: int):
    def wrap(builder):
        ZOO[name] = ZooEntry(name, what, input_shape, classes, builder)
        return builder
    return wrap


def get_zoo(name: str) -> ZooEntry:
    if name not in ZOO:
        raise GenomeError(f"unknown zoo model {name!r}; valid: {', '.join(ZOO)}")
    return ZOO[name]


def _flat_input(g: Genome, shape: tuple[int, ...]) -> str:
    """Input node plus a flatten when the data is not already flat (dense nets read flat features)."""
    node = g.add("input", "input", shape=list(shape))
    return g.add("flatten", "flatten", [node]) if len(shape) > 1 else node


def _features(shape: tuple[int, ...]) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


def mlp(shape: tuple[int, ...], classes: int, widths: Sequence[int], dropout: float = 0.0, act: str = "relu") -> Genome:
    """Dense network: flat features -> widths... -> classes."""
    g = Genome()
    x = _flat_input(g, shape)
    for i, width in enumerate(widths):
        x = g.chain(x, [(f"dense{i}", "dense", {"out_features": width}), (f"act{i}", "act", {"fn": act})])
        if dropout:
            x = g.add(f"drop{i}", "dropout", [x], p=dropout)
    x = g.add("logits", "dense", [x], out_features=classes)
    g.add("output", "output", [x])
    return g


@zoo_model("dense-baseline", "3072 -> 1024 -> 1024 -> 256 -> 100 MLP, permuted CIFAR-100 (seed 000)", (3072,), 100)
def dense_baseline(shape, classes):
    g = Genome()
    x = _flat_input(g, shape)
    for i, (width, drop) in enumerate([(1024, 0.4), (1024, 0.4), (256, 0.0)]):
        x = g.chain(x, [(f"dense{i}", "dense", {"out_features": width}), (f"act{i}", "act", {"fn": "relu"})])
        if drop:
            x = g.add(f"drop{i}", "dropout", [x], p=drop)
    g.add("output", "output", [g.add("logits", "dense", [x], out_features=classes)])
    return g


def _perm_branch(g: Genome, x: str, prefix: str, channels: Sequence[int], strides: Sequence[int],
                 seed: int, dropout: float) -> str:
    """Conv1d k5 stages with a fixed permutation of positions between stages (permutation CNN)."""
    for i, (c, s) in enumerate(zip(channels, strides)):
        x = g.chain(x, [(f"{prefix}conv{i}", "conv", {"out_channels": c, "kernel": 5, "stride": s}),
                        (f"{prefix}relu{i}", "act", {"fn": "relu"})])
        if i < len(channels) - 1:
            x = g.add(f"{prefix}perm{i}", "permute", [x], seed=seed + i)
            if dropout:
                x = g.add(f"{prefix}drop{i}", "dropout", [x], p=dropout)
    return x


def reshape_channels(features: int, widest: int = 64, min_length: int = 8) -> int:
    """The most channels (at most ``widest``) that divide ``features`` and leave ``min_length`` positions.

    The seed reshapes 3072 features to 64 channels x 48 positions; smaller inputs get a narrower reshape.
    """
    fits = [c for c in range(1, widest + 1) if features % c == 0 and features // c >= min(min_length, features)]
    return max(fits)


def _pseudo_spatial(g: Genome, x: str, shape: tuple[int, ...], channels: int | None, name: str) -> str:
    features = _features(shape)
    channels = channels or reshape_channels(features)
    if features % channels:
        raise GenomeError(f"node {name!r}: {features} features do not reshape into {channels} channels")
    if len(shape) > 1:
        x = g.add(f"{name}_flat", "flatten", [x])
    return g.add(name, "reshape", [x], shape=[channels, -1])


@zoo_model("perm-cnn", "3072 features as 64 channels x 48 (narrower for small inputs); Conv1d 64 k5 s2 with permutes; dense 100 (seed 000)",
           (3072,), 100)
def perm_cnn(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    x = _pseudo_spatial(g, x, shape, None, "reshape")
    x = _perm_branch(g, x, "", [64, 64, 64], [2, 2, 3], seed=1, dropout=0.25)
    x = g.chain(x, [("flatten", "flatten", {}), ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g


@zoo_model("multi-perm-cnn", "3 input permutations x perm-CNN branches (64/64/128), global max pool, concat (seed 000)",
           (3072,), 100)
def multi_perm_cnn(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    if len(shape) > 1:
        x = g.add("flatten_in", "flatten", [x])
    branches = []
    for b in range(3):
        p = g.add(f"b{b}_inperm", "permute", [x], seed=100 + b)
        p = _pseudo_spatial(g, p, (_features(shape),), None, f"b{b}_reshape")
        p = _perm_branch(g, p, f"b{b}_", [64, 64, 128], [2, 2, 3], seed=10 * (b + 1), dropout=0.25)
        branches.append(g.add(f"b{b}_gmp", "global_pool", [p], kind="max"))
    x = g.add("concat", "concat", branches)
    x = g.chain(x, [("drop", "dropout", {"p": 0.25}), ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g


def _all_cnn(shape, classes, convs, width_1x1: int = 192):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    for i, (c, k, s, pad) in enumerate(convs):
        x = g.chain(x, [(f"conv{i}", "conv", {"out_channels": c, "kernel": k, "stride": s, "padding": pad}),
                        (f"relu{i}", "act", {"fn": "relu"})])
    x = g.chain(x, [("conv1x1", "conv", {"out_channels": width_1x1, "kernel": 1}), ("relu1x1", "act", {"fn": "relu"}),
                    ("classifier", "conv", {"out_channels": classes, "kernel": 1}),
                    ("gap", "global_pool", {"kind": "avg"})])
    g.add("output", "output", [x])
    return g


@zoo_model("all-cnn-c", "All-CNN-C (Springenberg et al.): strided convs replace pooling, 1x1 to classes, GAP (seed 004)",
           (3, 32, 32), 10)
def all_cnn_c(shape, classes):
    return _all_cnn(shape, classes, [(96, 3, 1, "same"), (96, 3, 1, "same"), (96, 3, 2, "same"),
                                     (192, 3, 1, "same"), (192, 3, 1, "same"), (192, 3, 2, "same"),
                                     (192, 3, 1, "valid")])


@zoo_model("strided-cnn-c", "Model C without max-pools, the conv before each pool at stride 2 (seed 004)",
           (3, 32, 32), 10)
def strided_cnn_c(shape, classes):
    return _all_cnn(shape, classes, [(96, 3, 1, "same"), (96, 3, 2, "same"), (192, 3, 1, "same"),
                                     (192, 3, 2, "same"), (192, 3, 1, "valid")])


# Scaled to 28x28 grey images on 2 cores: the same layer pattern with widths 96 -> 32 and 192 -> 64 (about 1/9
# of the convs' multiply-adds); two stride-2 convs take 28 -> 14 -> 7 and the last 3x3 'valid' conv 7 -> 5.
@zoo_model("all-cnn-c-28", "All-CNN-C at 1x28x28, widths 96/192 scaled to 32/64 (seed 004, for Fashion-MNIST)",
           (1, 28, 28), 10)
def all_cnn_c_28(shape, classes):
    return _all_cnn(shape, classes, [(32, 3, 1, "same"), (32, 3, 1, "same"), (32, 3, 2, "same"),
                                     (64, 3, 1, "same"), (64, 3, 1, "same"), (64, 3, 2, "same"),
                                     (64, 3, 1, "valid")], width_1x1=64)


@zoo_model("strided-cnn-c-28", "Strided-CNN-C at 1x28x28, widths 96/192 scaled to 32/64 (seed 004, for Fashion-MNIST)",
           (1, 28, 28), 10)
def strided_cnn_c_28(shape, classes):
    return _all_cnn(shape, classes, [(32, 3, 1, "same"), (32, 3, 2, "same"), (64, 3, 1, "same"),
                                     (64, 3, 2, "same"), (64, 3, 1, "valid")], width_1x1=64)


@zoo_model("lenet5", "LeNet-5 on 28x28 MNIST: conv 6 k5 p2, pool, conv 16 k5, pool, 120, 84 (seed 002)", (1, 28, 28), 10)
def lenet5(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    x = g.chain(x, [("conv0", "conv", {"out_channels": 6, "kernel": 5, "padding": 2, "bias": False}),
                    ("relu0", "act", {"fn": "relu"}), ("pool0", "pool", {"kind": "max", "kernel": 2}),
                    ("conv1", "conv", {"out_channels": 16, "kernel": 5, "padding": "valid", "bias": False}),
                    ("relu1", "act", {"fn": "relu"}), ("pool1", "pool", {"kind": "max", "kernel": 2}),
                    ("flatten", "flatten", {}),
                    ("dense0", "dense", {"out_features": 120}), ("relu2", "act", {"fn": "relu"}),
                    ("dense1", "dense", {"out_features": 84}), ("relu3", "act", {"fn": "relu"}),
                    ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g


@zoo_model("mnist1d-cnn", "MNIST-1D paper CNN: Conv1d(1,25,5,s2,p1), Conv1d(25,25,3,s2,p1) x2, Linear(125,10)",
           (40,), 10)
def mnist1d_cnn(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    x = _pseudo_spatial(g, x, shape, 1, "reshape")
    for i, (k, c) in enumerate([(5, 25), (3, 25), (3, 25)]):
        x = g.chain(x, [(f"conv{i}", "conv", {"out_channels": c, "kernel": k, "stride": 2, "padding": 1}),
                        (f"relu{i}", "act", {"fn": "relu"})])
    x = g.chain(x, [("flatten", "flatten", {}), ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g


@zoo_model("mnist1d-mlp", "MNIST-1D paper MLP: 40 -> 100 -> 100 -> 10", (40,), 10)
def mnist1d_mlp(shape, classes):
    return mlp(shape, classes, [100, 100])


@zoo_model("convtwist-block", "stem conv, ResNet bottleneck with a Twist 3x3 in cycle(4) groups of 8 channels, GAP "
           "(seed 003)", (3, 32, 32), 10)
def convtwist_block(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    stem = g.chain(x, [("stem", "conv", {"out_channels": 64, "kernel": 3, "bias": False}),
                       ("stem_bn", "norm", {}), ("stem_relu", "act", {"fn": "relu"})])
    y = g.chain(stem, [("reduce", "reduce", {"out_channels": 32, "order": "conv-bn-act"}),
                       ("twist", "twist_conv", {"out_channels": 32, "groups": 4, "pattern": "cycle", "cycle": 4}),
                       ("twist_bn", "norm", {}), ("twist_relu", "act", {"fn": "relu"}),
                       ("expand", "conv", {"out_channels": 64, "kernel": 1, "bias": False}),
                       ("expand_bn", "norm", {})])
    x = g.add("residual", "add", [stem, y])
    x = g.chain(x, [("relu", "act", {"fn": "relu"}), ("gap", "global_pool", {"kind": "avg"}),
                    ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g


@zoo_model("decomposeme", "DecomposeMe: 2D net of k x 1 + 1 x k factorized convs, pooling, GAP (seed 001)",
           (1, 28, 28), 10)
def decomposeme(shape, classes):
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    for i, c in enumerate([32, 64, 64]):
        x = g.chain(x, [(f"fconv{i}", "factorized_conv", {"out_channels": c, "kernel": 3}),
                        (f"bn{i}", "norm", {}), (f"relu{i}", "act", {"fn": "relu"})])
        if i < 2:
            x = g.add(f"pool{i}", "pool", [x], kind="max", kernel=2)
    x = g.chain(x, [("gap", "global_pool", {"kind": "avg"}), ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g
