"""Define-by-run sampling of genomes on an Optuna trial, and a family label per genome.

``sample_genome`` asks the trial for every choice where its layer exists (``s2_pattern`` only when stage 2
has groups > 1, ``s1_rank`` only for a lowrank_conv), so TPE and NSGA-II see conditional parameters with
stable names. Choices that would make a genome invalid are not offered: groups are clamped to ones that
divide both channel counts, downsampling stops when a map gets short, iterated Twist keeps its shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from nas.errors import ConfigError
from nas.search.presets import DENSE, PRESETS, REORDERS, SCHEMA, dense_space, options, resolve_space
from search_space.genome import Genome
from search_space.ops import DESIGNS, REGISTRY
from search_space.zoo import mlp

__all__ = ["PRESETS", "resolve_space", "sample_genome", "genome_family", "dense_space", "sample_mlp",
           "image_shape_of"]


class _Draw:
    """Suggests a space key's value under a parameter name (``prefix + name``); fixed values are not asked."""

    def __init__(self, trial: optuna.trial.BaseTrial, space: dict, prefix: str = ""):
        self.trial, self.space, self.prefix = trial, space, prefix

    def __call__(self, key: str, name: str | None = None, choices: list | None = None) -> Any:
        spec = self.space[key] if choices is None else choices
        name = self.prefix + (name or key)
        if isinstance(spec, dict):
            low, high = spec["low"], spec["high"]
            if low == high:
                return low
            floats = key in SCHEMA and SCHEMA[key].kind is float or \
                any(isinstance(spec.get(k), float) for k in ("low", "high", "step"))
            if floats:
                return self.trial.suggest_float(name, float(low), float(high), step=spec.get("step"),
                                                log=spec.get("log", False))
            return self.trial.suggest_int(name, low, high, step=spec.get("step", 1), log=spec.get("log", False))
        if isinstance(spec, list):
            return spec[0] if len(spec) == 1 else self.trial.suggest_categorical(name, spec)
        return spec

    def options(self, key: str) -> list:
        return options(self.space[key])


class _StageDraw:
    """A stage's view of ``_Draw`` (``s1_kernel`` for ``kernel``): the ``StageChoices`` the conv ops ask."""

    def __init__(self, draw: _Draw, stage_prefix: str):
        self.draw, self.stage_prefix = draw, stage_prefix

    def __call__(self, key: str, name: str | None = None) -> Any:
        return self.draw(key, self.stage_prefix + (name or key))

    def options(self, key: str) -> list:
        return self.draw.options(key)


def image_shape_of(input_shape: tuple[int, ...], given: list | None = None) -> tuple[int, int, int] | None:
    """The (C, H, W) map a conv2d network reads: the input itself, ``given``, a square (C = 1 or 3) or the most
    square 1-channel map with both sides >= 4; ``None`` when the features make no such map."""
    features = math.prod(input_shape)
    if given is not None:
        return tuple(given) if math.prod(given) == features else None
    if len(input_shape) == 3:
        return tuple(input_shape)
    for channels in (1, 3):
        side = math.isqrt(features // channels)
        if features % channels == 0 and side * side * channels == features and side >= 4:
            return channels, side, side
    height = max(d for d in range(1, math.isqrt(features) + 1) if features % d == 0)
    return (1, height, features // height) if height >= 4 else None


@dataclass(frozen=True)
class _Globals:
    """Genome-wide choices every stage and the head share."""

    norm: str
    act: str
    downsample: str
    pool: str
    dropout: float
    head: str
    residual: bool = False


def _sample_globals(draw: _Draw, residual: bool) -> _Globals:
    downsample = draw("downsample")
    return _Globals(norm=draw("norm"), act=draw("act"), downsample=downsample,
                    pool=draw("pool") if downsample == "pool" else "max", dropout=float(draw("dropout")),
                    head=draw("head"), residual=bool(residual and draw("residual")))


def _sample_stage(draw: _Draw, i: int, shape: tuple[int, ...], types: list[str], gl: _Globals,
                  reduce: bool) -> tuple[dict, tuple[int, ...]]:
    """Stage ``i``'s choices as a plan (op, attrs, reduce, pool) and its output shape."""
    s, space = f"s{i}_", draw.space
    op = draw("conv_type", s + "type", types)
    cin = shape[0]
    order = draw("reduce", s + "reduce") if reduce and cin >= 16 else "none"
    if order != "none":
        cin //= 2
    drawn = REGISTRY[op].sample_attrs(_StageDraw(draw, s), cin, gl.act)
    cout, iters = drawn.pop("out_channels"), drawn.get("iters", 1)
    attrs: dict[str, Any] = {"out_channels": cout, "bias": gl.norm == "none", **drawn}
    stride, pool = 1, 0
    if min(shape[1:]) >= 2 * max(options(space["stride"])):
        step = draw("stride", s + "stride")
        if step > 1 and gl.downsample == "stride" and iters == 1:
            stride = attrs["stride"] = step
        elif step > 1:
            pool = step
    sizes = tuple(-(-n // stride) // (pool or 1) for n in shape[1:])
    return {"op": op, "attrs": attrs, "reduce": order, "pool": pool}, (cout, *sizes)


def _build_stage(g: Genome, x: str, p: str, plan: dict, shape: tuple[int, ...], gl: _Globals) -> str:
    """Adds one stage: [reduce 1x1] -> conv-like -> norm [-> + shortcut] -> act [-> pool]."""
    start = x
    if plan["reduce"] != "none":
        x = g.add(p + "reduce", "reduce", [x], out_channels=shape[0] // 2, order=plan["reduce"], act=gl.act)
    x = g.add(p + "conv", plan["op"], [x], **plan["attrs"])
    x = g.add(p + "norm", "norm", [x], kind=gl.norm)
    if gl.residual:
        stride, cout = plan["attrs"].get("stride", 1), plan["attrs"]["out_channels"]
        if stride > 1 or cout != shape[0]:
            start = g.add(p + "proj", "conv", [start], out_channels=cout, kernel=1, stride=stride, bias=False)
        x = g.add(p + "add", "add", [start, x])
    x = g.add(p + "act", "act", [x], fn=gl.act)
    if plan["pool"]:
        x = g.add(p + "pool", "pool", [x], kind=gl.pool, kernel=plan["pool"])
    return x


def _head(g: Genome, ends: list[tuple[str, str]], gl: _Globals, classes: int) -> None:
    """Branch ends -> logits: global pool or flatten, concat, dense; or (allcnn) 1x1 conv to classes, GAP, add."""
    if gl.head == "allcnn":
        outs = []
        for x, p in ends:
            if gl.dropout:
                x = g.add(p + "drop", "dropout", [x], p=gl.dropout)
            x = g.add(p + "classifier", "conv", [x], out_channels=classes, kernel=1)
            outs.append(g.add(p + "gap", "global_pool", [x], kind="avg"))
        x = outs[0] if len(outs) == 1 else g.add("sum", "add", outs)
    else:
        if gl.head == "dense":
            outs = [g.add(p + "flatten", "flatten", [x]) for x, p in ends]
        else:
            outs = [g.add(p + gl.head, "global_pool", [x], kind={"gap": "avg", "gmp": "max"}[gl.head])
                    for x, p in ends]
        x = outs[0] if len(outs) == 1 else g.add("concat", "concat", outs)
        if gl.dropout:
            x = g.add("drop", "dropout", [x], p=gl.dropout)
        x = g.add("logits", "dense", [x], out_features=classes)
    g.add("output", "output", [x])


def _draw_reorder(draw: _Draw, family: str, orders: dict[str, list[int]] | None) -> tuple[str, list[int] | None]:
    """The reorder method (and its order) for ``family``: offered only where the caller brought the orders
    computed from the training split; 'none' otherwise."""
    offered = [m for m in options(draw.space.get("reorder", "none")) if m in REORDERS[family]
               and (m == "none" or orders is not None and m in orders)]
    method = draw("reorder", choices=offered) if offered else "none"
    return method, (None if method == "none" else orders[method])


def _perm_genome(draw: _Draw, input_shape: tuple[int, ...], classes: int, types: list[str],
                 orders: dict[str, list[int]] | None) -> Genome:
    """[Reorder,] branches of (seeded permute, reshape to (C, -1), conv stages with permutes between), merged."""
    method, order = _draw_reorder(draw, "perm-1d", orders)
    space, features = draw.space, math.prod(input_shape)
    channels = [c for c in options(space["reshape_channels"]) if features % c == 0]
    if not channels:
        raise ConfigError(f"search_space.reshape_channels: none of {options(space['reshape_channels'])} divides "
                          f"the {features} input features")
    reshape = draw("reshape_channels", choices=channels)
    branches = draw("input_permutations")
    permute_first = draw("permute_first_branch")
    stages = draw("stages")
    gl = _sample_globals(draw, residual=False)
    permute_between = stages > 1 and draw("permute_between")
    plan, shapes = [], [(reshape, features // reshape)]
    for i in range(1, stages + 1):
        stage, shape = _sample_stage(draw, i, shapes[-1], types, gl, reduce=False)
        plan.append(stage)
        shapes.append(shape)

    g = Genome()
    x = g.add("input", "input", shape=list(input_shape))
    if len(input_shape) > 1:
        x = g.add("flatten_in", "flatten", [x])
    if order is not None:
        x = g.add("reorder", "reorder", [x], order=order, method=method)
    ends = []
    for b in range(1, branches + 1):
        p = f"b{b}_"
        y = g.add(p + "inperm", "permute", [x], seed=100 + b) if b > 1 or permute_first else x
        y = g.add(p + "reshape", "reshape", [y], shape=[reshape, -1])
        for i, stage in enumerate(plan, start=1):
            y = _build_stage(g, y, f"{p}s{i}_", stage, shapes[i - 1], gl)
            if i < stages and permute_between:
                y = g.add(f"{p}s{i}_perm", "permute", [y], seed=10 * b + i)
            if i < stages and gl.dropout:
                y = g.add(f"{p}s{i}_drop", "dropout", [y], p=gl.dropout)
        ends.append((y, p))
    _head(g, ends, gl, classes)
    return g


def _conv2d_genome(draw: _Draw, input_shape: tuple[int, ...], image: tuple[int, int, int], classes: int,
                   types: list[str], orders: dict[str, list[int]] | None) -> Genome:
    """An image CNN: (reshape to ``image``), [reorder on the grid,] conv stages with optional 1x1 reduce and
    residual, head."""
    method, order = _draw_reorder(draw, "conv2d", orders)
    stages = draw("stages")
    gl = _sample_globals(draw, residual=True)
    g = Genome()
    x = g.add("input", "input", shape=list(input_shape))
    if tuple(input_shape) != image:
        if len(input_shape) > 1:
            x = g.add("flatten_in", "flatten", [x])
        x = g.add("reshape", "reshape", [x], shape=list(image))
    if order is not None:
        x = g.add("reorder", "reorder", [x], order=order, method=method)
    shape: tuple[int, ...] = image
    for i in range(1, stages + 1):
        stage, out = _sample_stage(draw, i, shape, types, gl, reduce=True)
        x = _build_stage(g, x, f"s{i}_", stage, shape, gl)
        shape = out
        if i < stages and gl.dropout:
            x = g.add(f"s{i}_drop", "dropout", [x], p=gl.dropout)
    _head(g, [(x, "")], gl, classes)
    return g


def sample_genome(trial: optuna.trial.BaseTrial, space: dict, input_shape: tuple[int, ...],
                  num_classes: int, orders: dict[str, list[int]] | None = None) -> Genome:
    """Samples a genome from a resolved space; the caller validates it (invalid ones are rare).

    ``orders`` (method -> order, from ``evaluators.ordering.data_orders`` on the training split, for the methods
    ``reorder_request`` names) lets the space's ``reorder`` choice be offered; without it no reorder is drawn.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if space["family"] == DENSE:
        return sample_mlp(trial, input_shape, num_classes, space)
    families = list(dict.fromkeys(space["family"] if isinstance(space["family"], list) else [space["family"]]))
    given = space.get("image_shape")
    if "conv2d" in families and given is not None and math.prod(given) != math.prod(input_shape):
        raise ConfigError(f"search_space.image_shape: {list(given)} holds {math.prod(given)} values, the input "
                          f"{list(input_shape)} has {math.prod(input_shape)}")
    image = image_shape_of(input_shape, given)
    offered = [f for f in families if f == "perm-1d" or image is not None]
    if not offered:
        raise ConfigError(f"search_space.family: conv2d needs an image input (C, H, W) or features that reshape "
                          f"to one (see search_space.image_shape); got input shape {list(input_shape)}")
    family = _Draw(trial, space)("family", choices=offered)
    draw = _Draw(trial, space, f"{family}." if len(families) > 1 else "")
    types = [t for t in options(space["conv_type"]) if family == "conv2d" or not REGISTRY[t].image_only]
    if not types:
        raise ConfigError("search_space.conv_type: factorized_conv alone cannot build a perm-1d network; "
                          "add conv, separable_conv, lowrank_conv or twist_conv")
    if family == "perm-1d":
        return _perm_genome(draw, input_shape, num_classes, types, orders)
    return _conv2d_genome(draw, input_shape, image, num_classes, types, orders)


def reorder_request(space: dict, input_shape: tuple[int, ...]) -> tuple[list[str], tuple[int, int, int] | None]:
    """The reorder methods a space offers on this input, and the image their ``grid`` order is for: what to
    compute from the training split before sampling (``evaluators.ordering.data_orders``)."""
    if space.get("family") == DENSE:
        return [], None
    families = space["family"] if isinstance(space["family"], list) else [space["family"]]
    image = image_shape_of(tuple(input_shape), space.get("image_shape"))
    methods = {m for f in families for m in options(space.get("reorder", "none")) if m in REORDERS[f]} - {"none"}
    if image is None:
        methods.discard("grid")
    return sorted(methods), image


def sample_mlp(trial: optuna.trial.BaseTrial, input_shape: tuple[int, ...], num_classes: int,
               space: dict | None = None) -> Genome:
    """The tuned dense baseline: depth, a width per hidden layer (``d<depth>_l<i>_width``, offered from that
    depth's widths in ``width_by_depth`` where the space was kept within a size limit), dropout."""
    draw = _Draw(trial, space if space is not None else PRESETS[DENSE])
    depth = draw("depth")
    offered = draw.space.get("width_by_depth", {}).get(depth, options(draw.space["width"]))
    widths = [draw("width", f"d{depth}_l{i}_width", choices=offered) for i in range(1, depth + 1)]
    return mlp(tuple(input_shape), num_classes, widths, float(draw("dropout")))


def sample_epochs(trial: optuna.trial.BaseTrial, space: dict, default: int) -> int:
    """How many epochs the trial trains: drawn where the space offers ``epochs`` (the dense baseline), else
    ``default`` (the pruner's max_epochs)."""
    return int(_Draw(trial, space)("epochs")) if "epochs" in space else default


def genome_family(genome: Genome) -> str:
    """One label for plots: the most specific layer design (``search_space.ops.DESIGNS``) the genome uses."""
    used = {REGISTRY[data["op"]].design_of(data) for _, data in genome.graph.nodes(data=True)
            if data.get("op") in REGISTRY}
    return next((design for design in DESIGNS if design in used), "dense")
