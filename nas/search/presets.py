"""Search-space presets and their validation: what a study's ``search_space`` may offer the sampler.

A space maps each key to its offered values: a list (``suggest_categorical``; one entry = fixed), a range
``{low, high[, step, log]}`` (``suggest_int`` / ``suggest_float``) or a single value (fixed). ``family`` says
which network family the space builds: ``perm-1d`` (permutation CNN on flat features), ``conv2d`` (image
CNN), a list of both (chosen first, per trial), or ``dense`` (the MLPs of the tuned dense baseline).
The conv types offered are the registry's searchable conv ops (``search_space.ops``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from nas.errors import ConfigError
from search_space.layers import ACTIVATIONS
from search_space.ops import REGISTRY, ConvLike

FAMILIES = ("perm-1d", "conv2d")  # the convolutional families, which may be mixed
REORDERS = {"perm-1d": ("none", "spectral", "chain"), "conv2d": ("none", "grid")}  # evaluators.ordering.METHODS
DENSE = "dense"                   # MLPs: a family of its own


def conv_types() -> tuple[str, ...]:
    """The registry's searchable conv ops, in registration order (read at call time: a newly registered op counts)."""
    return tuple(name for name, op in REGISTRY.items() if isinstance(op, ConvLike) and op.searchable)


CONV_TYPES = conv_types()  # as registered when this module loaded; the ``full`` preset offers these
HEADS = ("gap", "gmp", "allcnn", "dense")  # global avg / max pool + dense, 1x1 conv to classes + GAP, flatten + dense

PRESETS: dict[str, dict] = {
    # MNIST-1D / permuted-feature data: flat features -> `input_permutations` branches, each a seeded
    # permute of the features, a reshape to (channels, -1) and 1-3 Conv1d-like stages; concat; dense.
    "perm-cnn-1d": {
        "family": "perm-1d",
        "reorder": ["none", "spectral", "chain"],  # an order recovered from the training data, before the branches
        "reshape_channels": [1, 2, 4, 5, 8],   # kept where they divide the features
        "input_permutations": [1, 2, 3],       # branches
        "permute_first_branch": [True, False],  # False: branch 1 reads the features in their own order
        "permute_between": [True, False],      # a seeded permute of positions between stages
        "stages": {"low": 1, "high": 3},
        "conv_type": ["conv", "separable_conv", "lowrank_conv", "twist_conv"],
        "channels": [8, 16, 24, 32, 48, 64],
        "kernel": [3, 5, 7],
        "groups": [1, 2, 4],                   # clamped to the largest listed that divides both channel counts
        "pattern": ["none", "shuffle", "cycle"],
        "cycle": [2, 4],
        "rank": [2, 4, 8],
        "twist_iters": [1, 2],
        "stride": [1, 2],
        "downsample": ["stride", "pool"],
        "pool": ["max", "avg"],
        "norm": ["batch", "none"],
        "act": ["relu", "gelu", "selu"],
        "dropout": {"low": 0.0, "high": 0.3},
        "head": ["gap", "gmp", "dense"],
    },
    # Images (C, H, W), or flat features reshaped to `image_shape` (null: a square map, else the most square).
    "conv2d": {
        "family": "conv2d",
        "image_shape": None,
        "reorder": ["none", "grid"],           # pixels placed on the grid by a 2D order recovered from the data
        "stages": {"low": 1, "high": 4},
        "conv_type": ["conv", "twist_conv", "factorized_conv", "separable_conv", "lowrank_conv"],
        "channels": [8, 16, 24, 32, 48, 64],
        "kernel": [3, 5],
        "groups": [1, 2, 4],
        "pattern": ["none", "shuffle", "cycle"],
        "cycle": [2, 4],
        "rank": [2, 4, 8],
        "twist_iters": [1, 2],
        "reduce": ["none", "conv-bn-act", "bn-act-conv", "conv"],  # 1x1 to half the channels before the conv
        "residual": [False, True],             # add the stage input (1x1 projection where shapes differ)
        "stride": [1, 2],
        "downsample": ["stride", "pool"],
        "pool": ["max", "avg"],
        "norm": ["batch", "none"],
        "act": ["relu", "gelu", "selu", "tanh"],
        "dropout": {"low": 0.0, "high": 0.3},
        "head": ["gap", "gmp", "allcnn", "dense"],
    },
}
PRESETS["full"] = {
    **PRESETS["perm-cnn-1d"], **PRESETS["conv2d"],
    "family": list(FAMILIES),                  # conv2d only where the input is (or reshapes to) an image
    "stages": {"low": 1, "high": 3},
    "conv_type": list(CONV_TYPES),             # factorized_conv only in the conv2d family
    "reorder": ["none", "spectral", "chain", "grid"],  # each family draws from its own (see REORDERS)
    "act": list(ACTIVATIONS),                  # with tanh and none (a linear network)
}

# The tuned dense baseline: MLP depth, one width per hidden layer (``d2_l1_width``, ...), dropout, and how many
# epochs it trains (``epochs``: absent = the pruner's max_epochs).
PRESETS[DENSE] = {"family": DENSE, "depth": {"low": 1, "high": 3},
                  "width": [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
                  "dropout": {"low": 0.0, "high": 0.5}}
FAMILY_PRESETS = {"perm-1d": "perm-cnn-1d", "conv2d": "conv2d", DENSE: DENSE}  # where an inline space starts


@dataclass(frozen=True)
class Key:
    """One space key: the value type, allowed values (``None`` = any of the type), families it applies to."""

    kind: type
    values: tuple | Callable[[], tuple] | None = None  # a callable is asked at validation time
    families: tuple[str, ...] = FAMILIES
    minimum: float = 1
    setting: bool = False  # a plain setting, not a set of choices


PERM, CONV2D, MLP, EVERY = ("perm-1d",), ("conv2d",), (DENSE,), (*FAMILIES, DENSE)
SCHEMA: dict[str, Key] = {
    "family": Key(str, EVERY, EVERY),
    "depth": Key(int, families=MLP),
    "width": Key(int, families=MLP),
    "epochs": Key(int, families=MLP),
    "reshape_channels": Key(int, families=PERM),
    "input_permutations": Key(int, families=PERM),
    "permute_first_branch": Key(bool, families=PERM),
    "permute_between": Key(bool, families=PERM),
    "image_shape": Key(list, families=CONV2D, setting=True),
    "reorder": Key(str, ("none", "spectral", "chain", "grid")),
    "stages": Key(int),
    "conv_type": Key(str, conv_types),
    "channels": Key(int),
    "kernel": Key(int),
    "groups": Key(int),
    "pattern": Key(str, ("none", "shuffle", "cycle")),
    "cycle": Key(int, minimum=2),
    "rank": Key(int),
    "twist_iters": Key(int),
    "reduce": Key(str, ("none", "conv-bn-act", "bn-act-conv", "conv"), CONV2D),
    "residual": Key(bool, families=CONV2D),
    "stride": Key(int),
    "downsample": Key(str, ("stride", "pool")),
    "pool": Key(str, ("max", "avg")),
    "norm": Key(str, ("batch", "none")),
    "act": Key(str, tuple(ACTIVATIONS)),
    "dropout": Key(float, minimum=0.0, families=EVERY),
    "head": Key(str, HEADS),
}


def resolve_space(spec: Any) -> dict:
    """The full space of a study: ``{preset: NAME, **overrides}``, or an inline space over its family's preset."""
    if not isinstance(spec, dict):
        raise ConfigError(f"search_space: expected a mapping with 'preset' or 'family', got {spec!r}")
    spec = dict(spec)
    if "preset" in spec:
        name = spec.pop("preset")
        if name not in PRESETS:
            raise ConfigError(f"search_space.preset: unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        base = PRESETS[name]
    elif "family" in spec:
        family = spec["family"]
        families = family if isinstance(family, list) else [family]
        check_key("family", family)
        if DENSE in families and len(set(families)) > 1:
            raise ConfigError(f"search_space.family: {DENSE!r} is a family of its own, got {family!r}")
        base = PRESETS["full" if len(set(families)) > 1 else FAMILY_PRESETS[families[0]]]
    else:
        raise ConfigError("search_space: give 'preset' (one of " + ", ".join(PRESETS) + ") or an inline space "
                          "with 'family' (perm-1d, conv2d or both, or dense)")
    space = copy.deepcopy(base)
    for key, value in spec.items():
        if key not in SCHEMA:
            raise ConfigError(f"search_space.{key}: unknown key; valid: preset, {', '.join(SCHEMA)}")
        check_key(key, value)
        space[key] = copy.deepcopy(value)
    families = space["family"] if isinstance(space["family"], list) else [space["family"]]
    for family in families:  # e.g. {preset: perm-cnn-1d, family: conv2d}: conv2d's own keys from its preset
        for key, value in PRESETS[FAMILY_PRESETS[family]].items():
            space.setdefault(key, copy.deepcopy(value))
    for key in spec:
        if not set(SCHEMA[key].families) & set(families):
            raise ConfigError(f"search_space.{key}: only used by family {SCHEMA[key].families[0]!r}, "
                              f"not by {', '.join(families)}")
    return space


def check_key(key: str, value: Any) -> None:
    """Raises ConfigError unless ``value`` is a valid offer for ``key`` (a list, a range or one value)."""
    spec = SCHEMA[key]
    where = f"search_space.{key}"
    if spec.setting:  # image_shape: null or [C, H, W]
        if value is not None and not (isinstance(value, list) and len(value) == 3
                                      and all(_is(v, int) and v >= 1 for v in value)):
            raise ConfigError(f"{where}: expected null or [C, H, W] of positive integers, got {value!r}")
        return
    if isinstance(value, dict):
        if spec.kind not in (int, float) or not {"low", "high"} <= set(value) \
                or set(value) - {"low", "high", "step", "log"}:
            raise ConfigError(f"{where}: a range needs 'low' and 'high' (and optionally 'step', 'log'), "
                              f"and only number keys take ranges; got {value!r}")
        values = [value["low"], value["high"]]
        if _is(value["low"], (int, float)) and _is(value["high"], (int, float)) and value["low"] > value["high"]:
            raise ConfigError(f"{where}: range low={value['low']} is above high={value['high']}")
    elif isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: the list of choices is empty")
        values = value
    else:
        values = [value]
    for v in values:
        kinds = (int, float) if spec.kind is float else spec.kind
        if not _is(v, kinds):
            raise ConfigError(f"{where}: expected {spec.kind.__name__} values, got {v!r}")
        valid = spec.values() if callable(spec.values) else spec.values
        if valid is not None and v not in valid:
            raise ConfigError(f"{where}: {v!r} is not a valid choice; valid: {', '.join(map(str, valid))}")
        if spec.kind in (int, float) and v < spec.minimum:
            raise ConfigError(f"{where}: values must be >= {spec.minimum}, got {v!r}")
        if key == "kernel" and v % 2 == 0:
            raise ConfigError(f"{where}: kernels must be odd ('same' padding), got {v}")
        if key == "dropout" and v >= 1.0:
            raise ConfigError(f"{where}: dropout must be below 1, got {v}")


def _is(value: Any, kinds: type | tuple) -> bool:
    """isinstance that does not count bools as numbers."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def dense_space() -> dict:
    """The tuned dense baseline's space: MLP depth, one width per layer, dropout."""
    return copy.deepcopy(PRESETS[DENSE])


def mlp_costs(features: int, widths: list[int], classes: int) -> tuple[int, int]:
    """Parameters and FLOPs (multiply-adds) of an MLP: linear layers with biases; dropout costs nothing."""
    sizes = [features, *widths, classes]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:])), sum(a * b for a, b in zip(sizes, sizes[1:]))


def dense_space_within(space: dict, features: int, classes: int, max_params: int | None,
                       max_flops: int | None = None) -> dict:
    """A dense space kept within the size limits: for each depth the widths whose network of that depth, every
    hidden layer that wide, fits (``width_by_depth``). An MLP's parameters and FLOPs grow with every width, so any
    mix of widths drawn for a depth fits too: no baseline trial is spent on an infeasible network. Depths where no
    width fits are dropped. When no listed width fits at all (a limit of a few thousand parameters on images), one
    hidden layer as wide as fits is offered, and half and a quarter of that width; when not even one unit fits,
    a ConfigError names the limit."""
    if space["family"] != DENSE:
        return space

    def fits_limits(depth: int, width: int) -> bool:
        params, flops = mlp_costs(features, [width] * depth, classes)
        return (max_params is None or params <= max_params) and (max_flops is None or flops <= max_flops)

    depths = options(space["depth"])
    fits = {d: [w for w in options(space["width"]) if fits_limits(d, w)] for d in depths}
    fits = {d: widths for d, widths in fits.items() if widths} or \
        {1: narrow_widths(features, classes, fits_limits, min(options(space["width"])))}
    return {**space, "depth": list(fits), "width_by_depth": fits}


def narrow_widths(features: int, classes: int, fits_limits: Callable[[int, int], bool], narrowest: int) -> list[int]:
    """The widest one-hidden-layer MLP within the limits (narrower than ``narrowest``, the narrowest listed width,
    which does not fit), and half and a quarter of its width."""
    widest = 0
    while widest + 1 < narrowest and fits_limits(1, widest + 1):
        widest += 1
    if widest == 0:
        params, flops = mlp_costs(features, [1], classes)
        raise ConfigError(f"constraints: no dense baseline fits the size limits (the smallest MLP, {features} -> 1 -> "
                          f"{classes}, has {params:,} params and {flops:,} FLOPs); set baseline.trials: 0, or give "
                          "the baseline its own baseline.max_params")
    return sorted({max(1, widest // 4), max(1, widest // 2), widest})


def options(spec: Any) -> list:
    """Every value a key may take: a list as is, an integer range expanded (a float range: its two ends), a single
    value."""
    if isinstance(spec, dict):
        if isinstance(spec["low"], int) and isinstance(spec["high"], int):
            return list(range(spec["low"], spec["high"] + 1, spec.get("step", 1)))
        return [spec["low"], spec["high"]]
    return list(spec) if isinstance(spec, list) else [spec]
