"""BatchNorm folding for export: which norms fold into the conv or linear layer beside them, and the folded weights."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from search_space.codegen.names import module_names
from search_space.genome import Genome, NodeInfo


BN_EPS = 1e-5  # every BatchNorm the layer library builds has torch's default eps


@dataclass(frozen=True)
class Folding:
    """Which BatchNorms fold away; at inference a BN is the per-channel affine map ``y = s*x + t`` with
    ``s = gamma / sqrt(running_var + eps)``, ``t = beta - running_mean * s``.

    ``after``: norm node -> the node it directly follows, whose last op is a conv or linear layer and whose only
    consumer is that norm: ``s*(W x + b) + t = (s W) x + (s b + t)``, W scaled per output channel (this covers
    grouped and gathered convs, and a one-step Twist, whose coordinate coefficients scale with W).
    ``inside``: reduce nodes whose own BN folds: conv-bn-act always; bn-act-conv only when its act is none,
    into the 1x1 conv after it: ``W (s x + t) + b = (W s) x + (W t + b)`` (exact: a 1x1 conv has no padding).
    ``kept``: nodes holding a BN that cannot fold (after an activation, a merge, pooling, an iterated Twist).
    """

    after: dict[str, str] = field(default_factory=dict)
    inside: frozenset[str] = frozenset()
    kept: tuple[str, ...] = ()

    @property
    def producers(self) -> set[str]:
        return set(self.after.values())


def output_layer(node: NodeInfo, inner_folded: bool) -> tuple[str, tuple[str, ...]] | None:
    """Where the conv/linear that makes the node's output lives in its module (a state-dict prefix), with the
    other per-output-channel tensors scaled with it; None when the output is not that layer's (an act)."""
    a = node.attrs
    if node.op == "reduce":
        if a["order"] == "conv-bn-act" and a["act"] != "none":
            return None
        return ("block.0" if a["order"] == "conv" or inner_folded else "block.2"), ()
    if node.op == "twist_conv":
        return ("conv", ("coeff_x", "coeff_y")[:len(node.shape) - 1]) if a["iters"] == 1 else None
    where = {"conv": "conv", "factorized_conv": "horizontal", "separable_conv": "pointwise",
             "lowrank_conv": "mix", "dense": ""}
    return (where[node.op], ()) if node.op in where else None


def plan_folding(genome: Genome) -> Folding:
    """Every BatchNorm that can fold into the conv or linear layer next to it (see :class:`Folding`)."""
    info = genome.analyze()
    inside = frozenset(n for n, i in info.items() if i.op == "reduce" and (
        i.attrs["order"] == "conv-bn-act" or i.attrs["order"] == "bn-act-conv" and i.attrs["act"] == "none"))
    consumers = Counter(p for node in info.values() for p in node.inputs)
    after, kept = {}, []
    for name, node in info.items():
        if node.op == "reduce" and node.attrs["order"] == "bn-act-conv" and name not in inside:
            kept.append(name)
        if node.op != "norm" or node.attrs["kind"] != "batch":
            continue
        source = node.inputs[0]
        if consumers[source] == 1 and output_layer(info[source], source in inside) is not None:
            after[name] = source
        else:
            kept.append(name)
    return Folding(after, inside, tuple(kept))


def folded_elements(genome: Genome, folding: Folding) -> int:
    """Per-sample values the folded BatchNorms no longer scale and shift (one multiply-add each)."""
    info = genome.analyze()
    inner = [info[n].shape if info[n].attrs["order"] == "conv-bn-act" else info[info[n].inputs[0]].shape
             for n in folding.inside]
    return sum(math.prod(info[n].shape) for n in folding.after) + sum(math.prod(s) for s in inner)


def _pop_batchnorm(state: dict, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Removes a BN's tensors from ``state``; returns its (scale, shift) in float64."""
    gamma, beta, mean, var = (state.pop(f"{prefix}.{k}").double()
                              for k in ("weight", "bias", "running_mean", "running_var"))
    state.pop(f"{prefix}.num_batches_tracked", None)
    scale = gamma / torch.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _scale_outputs(state: dict, prefix: str, extra: list[str], scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``W <- s W`` per output channel (and the ``extra`` tensors), ``b <- s b + t`` (b = 0 when absent)."""
    weight = state[f"{prefix}.weight"]
    for key in [f"{prefix}.weight", *extra]:
        tensor = state[key]
        state[key] = (tensor.double() * scale.view(-1, *[1] * (tensor.dim() - 1))).to(tensor.dtype)
    bias = state.get(f"{prefix}.bias")
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.double()
    state[f"{prefix}.bias"] = (bias * scale + shift).to(weight.dtype)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def fold_state_dict(genome: Genome, state: dict, folding: Folding) -> dict:
    """The compiled model's state dict turned into the folded network's (math in float64)."""
    info, names = genome.analyze(), module_names(genome)
    out = {k: v.detach().clone() for k, v in state.items()}
    for node in sorted(folding.inside):
        m = names[node]
        if info[node].attrs["order"] == "conv-bn-act":
            _scale_outputs(out, f"{m}.block.0", [], *_pop_batchnorm(out, f"{m}.block.1"))
            continue
        scale, shift = _pop_batchnorm(out, f"{m}.block.0")
        weight, bias = out.pop(f"{m}.block.2.weight"), out.pop(f"{m}.block.2.bias")
        wide = weight.double()
        out[f"{m}.block.0.weight"] = (wide * scale.view(1, -1, *[1] * (wide.dim() - 2))).to(weight.dtype)
        out[f"{m}.block.0.bias"] = (bias.double() + wide.flatten(1) @ shift).to(bias.dtype)
    for norm, producer in folding.after.items():
        scale, shift = _pop_batchnorm(out, names[norm])
        rel, extra = output_layer(info[producer], producer in folding.inside)
        m = names[producer]
        _scale_outputs(out, _join(m, rel), [_join(m, e) for e in extra], scale, shift)
        vertical = f"{m}.vertical"
        if info[producer].op == "factorized_conv" and f"{vertical}.bias" not in out:  # bias=True adds it: zeros
            weight = out[f"{vertical}.weight"]
            out[f"{vertical}.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    return out


