"""The op registry: one module per family of node kinds; importing this package registers them all.

``base`` holds the contract (:class:`Op`) and the registry; ``basic`` and ``conv`` each register their ops. An op's
entry carries all that its consumers need: attributes, shape, params and FLOPs, its layer, the source the exporter
writes for it and, for convs, the choices the sampler offers. May import only ``search_space.layers`` and errors.
"""
from search_space.ops import basic, conv  # noqa: F401  (registers the ops)
from search_space.ops.base import (ACTS, DESIGNS, REGISTRY, Attr, Op, Shape, conv_out_size, get_op, layer_call,
                                   normalize_attrs, register, resolve_padding, spatial_dims)
from search_space.ops.conv import ConvLike, StageChoices

__all__ = ["ACTS", "DESIGNS", "REGISTRY", "Attr", "Op", "Shape", "conv_out_size", "get_op", "layer_call", "normalize_attrs",
           "register", "resolve_padding", "spatial_dims", "ConvLike", "StageChoices"]
