"""The op contract and its registry: attributes, shape rule, parameter and FLOP count, module and exporter source.

FLOPs are multiply-adds of convolutions and dense layers (what ``torch.utils.flop_counter`` counts, halved);
element-wise work (norms, activations, pooling, Twist's coordinate products) is not counted.
"""
from __future__ import annotations

import inspect
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from torch import nn

from search_space import layers
from search_space.errors import GenomeError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Attr:
    """One typed attribute of an op: its kind, default (``None`` = required) and allowed values."""

    kind: type
    default: Any = None
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


class Op(ABC):
    """A node kind. ``arity`` is 0 (input), 1, or -1 (a merge of two or more)."""

    name: str = ""
    arity: int = 1
    attrs: dict[str, Attr] = {}
    design: str | None = None  # the layer design it stands for in plots, one of DESIGNS (None: none of them)

    @abstractmethod
    def out_shape(self, node: str, a: dict, ins: list[Shape]) -> Shape:
        """The output shape, or a GenomeError naming the node and attribute that make it impossible."""

    def params(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return 0

    def flops(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return 0

    def inner_values(self, a: dict, ins: list[Shape], out: Shape) -> int:
        """Values per sample of the largest map the layer makes inside itself (0: none but its output); the
        genome's size limit applies to it as to an output."""
        return 0

    def build(self, a: dict, ins: list[Shape], out: Shape) -> nn.Module | None:
        return None

    @abstractmethod
    def source(self, a: dict, ins: list[Shape], out: Shape, bias: bool) -> str | None:
        """The exporter's source for this node's layer (``bias`` forced on where a BatchNorm folds into it);
        None when the node needs no module (the identity at inference, or a node the network writes itself)."""

    def short(self, a: dict) -> str:
        return self.name

    def design_of(self, a: dict) -> str | None:
        """The design label of a node with attributes ``a`` (as written in the genome)."""
        return self.design


DESIGNS = ("twist", "grouped-pattern", "decomposed", "reordered", "permutation", "plain")  # most specific first


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    REGISTRY[cls.name] = cls()
    return cls


def layer_call(target: str, *args: Any, **kwargs: Any) -> str:
    """Source of a layer-library constructor call; keyword arguments equal to the class's defaults are left out."""
    cls = getattr(layers, target, None)
    if inspect.isclass(cls):
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        kwargs = {k: v for k, v in kwargs.items() if defaults.get(k, inspect.Parameter.empty) != v}
    parts = [_literal(a) for a in args] + [f"{k}={_literal(v)}" for k, v in kwargs.items()]
    return f"{target}({', '.join(parts)})"


def _literal(value: Any) -> str:
    """Python source of a constructor argument, strings in double quotes."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def get_op(name: str, node: str = "?") -> Op:
    """The op called ``name``; an unknown name is a GenomeError that lists the valid ones."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise GenomeError(f"node {node!r}: unknown op {name!r}; valid ops: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def spatial_dims(node: str, shape: Shape, attr: str = "input") -> int:
    """1 for a (C, L) map, 2 for (C, H, W); a flat input is an error for spatial ops."""
    if len(shape) not in (2, 3):
        raise GenomeError(f"node {node!r}: {attr} needs a (C, L) or (C, H, W) map, got shape {list(shape)}; "
                          "add a reshape node first")
    return len(shape) - 1


def resolve_padding(node: str, padding: Any, kernel: int, dilation: int = 1) -> int:
    """``same`` (odd kernels), ``valid`` or an explicit integer."""
    if padding == "valid":
        return 0
    if padding == "same":
        if kernel % 2 == 0:
            raise GenomeError(f"node {node!r}: attribute 'padding'='same' needs an odd kernel, got kernel={kernel}")
        return dilation * (kernel - 1) // 2
    try:
        value = int(padding)
    except (TypeError, ValueError):
        raise GenomeError(f"node {node!r}: attribute 'padding' must be 'same', 'valid' or an integer, got {padding!r}")
    if value < 0:
        raise GenomeError(f"node {node!r}: attribute 'padding' must be >= 0, got {value}")
    if value > dilation * (kernel - 1):  # the extra border would give outputs that see only zeros
        raise GenomeError(f"node {node!r}: attribute 'padding'={value} is more than the kernel reaches "
                          f"(dilation * (kernel - 1) = {dilation * (kernel - 1)})")
    return value


def conv_out_size(node: str, size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                  attr: str = "stride") -> int:
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise GenomeError(f"node {node!r}: attribute {attr!r} empties a spatial dimension "
                          f"(size {size}, kernel {kernel}, stride {stride}, padding {padding})")
    return out


ACTS = tuple(layers.ACTIVATIONS)


def normalize_attrs(node: str, op: Op, raw: dict) -> dict:
    """Attributes with defaults filled and types checked; unknown or missing ones are GenomeErrors."""
    unknown = set(raw) - set(op.attrs)
    if unknown:
        raise GenomeError(f"node {node!r}: unknown attribute {sorted(unknown)[0]!r} for op {op.name!r}; "
                          f"valid: {', '.join(op.attrs) or 'none'}")
    out = {}
    for key, spec in op.attrs.items():
        value = raw.get(key, spec.default)
        if value is None:
            raise GenomeError(f"node {node!r}: op {op.name!r} needs attribute {key!r}")
        out[key] = _coerce(node, key, spec, value)
    return out


def _coerce(node: str, key: str, spec: Attr, value: Any) -> Any:
    bad = GenomeError(f"node {node!r}: attribute {key!r} must be {spec.kind.__name__}"
                      f"{' in ' + str(list(spec.choices)) if spec.choices else ''}, got {value!r}")
    if spec.kind is object:
        return value
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif spec.kind is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad
        return [int(v) for v in value]
    elif not isinstance(value, spec.kind):
        raise bad
    if spec.choices is not None and value not in spec.choices:
        raise bad
    if spec.minimum is not None and value < spec.minimum:
        raise GenomeError(f"node {node!r}: attribute {key!r} must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise GenomeError(f"node {node!r}: attribute {key!r} must be <= {spec.maximum}, got {value!r}")
    return value
