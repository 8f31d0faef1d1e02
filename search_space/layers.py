"""Layer library of the search space; imports only torch so exported models can carry this file.

Shapes exclude the batch dimension: flat ``(F,)``, 1D ``(C, L)``, 2D ``(C, H, W)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
SOBEL_Y = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]
CENTRAL_DIFF = [-1.0, 0.0, 1.0]


def seeded_permutation(size: int, seed: int) -> torch.Tensor:
    """The fixed permutation of ``size`` positions drawn from ``seed`` (same on every machine)."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(size, generator=generator)


def group_channel_order(channels: int, groups: int, pattern: str, cycle: int = 4) -> torch.Tensor:
    """Input-channel order that makes a grouped conv read permuted groups.

    ``shuffle``: ShuffleNet transpose of (groups, channels/groups).
    ``cycle``: inside each block of ``cycle`` groups, output group i reads input group i-1 (mod cycle),
    the "4-cycles" of ConvTwist; equal to a dense kernel with off-diagonal blocks, at 1/groups the cost.
    """
    per_group = channels // groups
    index = torch.arange(channels)
    if pattern == "shuffle":
        return index.view(groups, per_group).t().reshape(-1)
    if pattern == "cycle":
        return index.view(groups // cycle, cycle, per_group).roll(1, dims=1).reshape(-1)
    return index


class Reshape(nn.Module):
    """Flat features -> pseudo-spatial map, e.g. ``(F,) -> (C, F/C)``."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Flatten(nn.Module):
    """Everything after the batch dimension in one axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Permute(nn.Module):
    """Fixed seeded permutation of positions (features of a flat input, the spatial positions of a map).

    The permutation-CNN trick: far-apart features meet inside one kernel. The index is a saved buffer.
    """

    def __init__(self, size: int, seed: int):
        super().__init__()
        self.register_buffer("index", seeded_permutation(size, seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x.index_select(1, self.index)
        flat = x.flatten(2).index_select(2, self.index)
        return flat.view_as(x)


class Reorder(nn.Module):
    """A fixed order of positions recovered from data (the ``reorder`` op): output position ``i`` reads input
    position ``order[i]``. The order is stored with the genome, so the network needs no data to apply it."""

    def __init__(self, order: list[int] | tuple[int, ...]):
        super().__init__()
        self.register_buffer("index", torch.tensor(list(order), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x.index_select(1, self.index)
        return x.flatten(2).index_select(2, self.index).view_as(x)


def whole_group_order(order: torch.Tensor, groups: int) -> torch.Tensor | None:
    """The group permutation when ``order`` moves whole groups of channels (the cycle pattern), else None."""
    blocks = order.view(groups, -1)
    size = blocks.shape[1]
    starts = blocks[:, :1]
    if bool((blocks == starts + torch.arange(size)).all()) and bool((starts % size == 0).all()):
        return (starts[:, 0] // size).clone()
    return None


class ChannelOrder(nn.Module):
    """Gathers input channels in a fixed order (the group pattern in front of a grouped conv).

    A channels_last input keeps its layout: whole groups are gathered on the (N, H, W, G, C/G) view, which avoids
    two layout conversions per call (a plain ``index_select`` on dim 1 returns a contiguous tensor).
    """

    def __init__(self, order: torch.Tensor, groups: int = 1):
        super().__init__()
        self.register_buffer("order", order, persistent=False)
        group_order = whole_group_order(order, groups) if groups > 1 else None
        self.register_buffer("group_order", group_order, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group_order is not None and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
                and not x.is_contiguous():
            n, c, h, w = x.shape
            groups = self.group_order.numel()
            nhwc = x.permute(0, 2, 3, 1).reshape(n * h * w, groups, c // groups)
            return nhwc.index_select(1, self.group_order).view(n, h, w, c).permute(0, 3, 1, 2)
        return x.index_select(1, self.order)


def _conv_fn(dim: int):
    return F.conv1d if dim == 1 else F.conv2d


class PermutedGroupConv(nn.Module):
    """Grouped conv whose groups read permuted input groups: a channel gather, then ``groups=g`` conv."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, pattern: str = "none",
                 cycle: int = 4, bias: bool = True):
        super().__init__()
        conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
        self.pattern = pattern
        self.gather = ChannelOrder(group_channel_order(in_channels, groups, pattern, cycle), groups) \
            if pattern != "none" and groups > 1 else nn.Identity()
        self.conv = conv_cls(in_channels, out_channels, kernel, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.gather(x))


class TwistConv(nn.Module):
    """ConvTwist: ``out = C(x;W) + X*C(x;Kx) + Y*C(x;Ky)`` with Sobel-built ``Kx``, ``Ky`` = rot90(``Kx``).

    ``Kx = Ax*Dx + Ay*Dy``; X and Y are the output grid's coordinates in [-1, 1]. The 1D analogue has one
    coordinate map and ``Kx = Ax*D`` with D = [-1, 0, 1]. With ``iters > 1`` (same in/out shape) the layer
    is integrated by forward Euler: ``y <- y + f(y)/iters`` from ``y = x``, returning ``y - x``.
    Groups and group patterns act on all three convs through one channel gather. Fully differentiable.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, out_size: Sequence[int],
                 stride: int = 1, groups: int = 1, pattern: str = "none", cycle: int = 4,
                 iters: int = 1, bias: bool = False):
        super().__init__()
        self.dim, self.stride, self.groups, self.iters = dim, stride, groups, iters
        conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
        self.gather = ChannelOrder(group_channel_order(in_channels, groups, pattern, cycle), groups) \
            if pattern != "none" and groups > 1 else nn.Identity()
        self.conv = conv_cls(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=bias)
        std = float(self.conv.weight.detach().std())
        per_group_in = in_channels // groups
        self.coeff_x = nn.Parameter(torch.randn(out_channels, per_group_in) * std)
        if dim == 2:
            self.coeff_y = nn.Parameter(torch.randn(out_channels, per_group_in) * std)
            self.register_buffer("sobel", torch.tensor([SOBEL_X, SOBEL_Y]), persistent=False)
            ys = torch.linspace(-1.0, 1.0, out_size[0]).view(-1, 1).expand(*out_size)
            xs = torch.linspace(-1.0, 1.0, out_size[1]).view(1, -1).expand(*out_size)
            self.register_buffer("grid", torch.stack([xs, ys]).contiguous(), persistent=False)
        else:
            self.register_buffer("sobel", torch.tensor([CENTRAL_DIFF]), persistent=False)
            self.register_buffer("grid", torch.linspace(-1.0, 1.0, out_size[0]).view(1, -1), persistent=False)

    def twist_kernels(self) -> list[torch.Tensor]:
        """The coordinate-weighted kernels, built by broadcasting (no Python loop)."""
        if self.dim == 1:
            return [self.coeff_x[:, :, None] * self.sobel[0]]
        kx = self.coeff_x[:, :, None, None] * self.sobel[0] + self.coeff_y[:, :, None, None] * self.sobel[1]
        return [kx, kx.transpose(2, 3).flip(3)]

    def _step(self, x: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
        x = self.gather(x)
        conv = _conv_fn(self.dim)
        out = self.conv(x)
        for kernel, coord in zip(kernels, self.grid):
            out = out + coord * conv(x, kernel, stride=self.stride, padding=1, groups=self.groups)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = self.twist_kernels()
        if self.iters <= 1:
            return self._step(x, kernels)
        y = x
        for _ in range(self.iters):
            y = y + self._step(y, kernels) / self.iters
        return y - x


class FactorizedConv2d(nn.Module):
    """DecomposeMe: a k x k kernel as k x 1, activation, 1 x k (stride split over the two axes)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 mid_channels: int | None = None, act: str = "relu", bias: bool = True):
        super().__init__()
        mid = mid_channels or out_channels
        self.vertical = nn.Conv2d(in_channels, mid, (kernel, 1), stride=(stride, 1), padding=(padding, 0), bias=bias)
        self.act = make_activation(act)
        self.horizontal = nn.Conv2d(mid, out_channels, (1, kernel), stride=(1, stride), padding=(0, padding), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.act(self.vertical(x)))


class SeparableConv(nn.Module):
    """Depthwise k conv (one filter per channel) then pointwise 1x1 mixing."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
        self.depthwise = conv_cls(in_channels, in_channels, kernel, stride=stride, padding=padding,
                                  groups=in_channels, bias=False)
        self.pointwise = conv_cls(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class LowRankConv(nn.Module):
    """A k conv to ``rank`` channels then 1x1 to the output: the truncated-SVD factorization of a conv."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel: int, rank: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
        self.basis = conv_cls(in_channels, rank, kernel, stride=stride, padding=padding, bias=False)
        self.mix = conv_cls(rank, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.basis(x))


class Reduce1x1(nn.Module):
    """1x1 channel reduction in one of three orders: ``conv-bn-act``, ``bn-act-conv`` or ``conv`` alone."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, order: str = "conv-bn-act", act: str = "relu"):
        super().__init__()
        conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
        norm_cls = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
        conv = conv_cls(in_channels, out_channels, 1, bias=order != "conv-bn-act")
        if order == "conv-bn-act":
            self.block = nn.Sequential(conv, norm_cls(out_channels), make_activation(act))
        elif order == "bn-act-conv":
            self.block = nn.Sequential(norm_cls(in_channels), make_activation(act), conv)
        else:
            self.block = nn.Sequential(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class GlobalPool(nn.Module):
    """Global average or max over all spatial positions -> ``(C,)``."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return flat.mean(2) if self.kind == "avg" else flat.amax(2)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "selu": nn.SELU, "tanh": nn.Tanh, "none": nn.Identity}


def make_activation(name: str) -> nn.Module:
    """Activation module by name (``relu``, ``gelu``, ``selu``, ``tanh``, ``none``)."""
    return ACTIVATIONS[name]()


def make_pool(dim: int, kind: str, kernel: int, stride: int) -> nn.Module:
    """Max or average pooling for 1D or 2D maps."""
    table = {(1, "max"): nn.MaxPool1d, (2, "max"): nn.MaxPool2d, (1, "avg"): nn.AvgPool1d, (2, "avg"): nn.AvgPool2d}
    return table[(dim, kind)](kernel, stride)


def make_batchnorm(shape: Sequence[int]) -> nn.Module:
    """BatchNorm over the channel axis (the features of a flat input)."""
    return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])


@torch.no_grad()
def lsuv_init(model: nn.Module, batch: torch.Tensor, tol: float = 0.05, max_iters: int = 10) -> nn.Module:
    """LSUV (Mishkin & Matas 2016): orthonormal weights, then rescale each layer to unit output variance."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    for layer in layers:
        if layer.weight.dim() >= 2 and layer.weight.shape[0] * math.prod(layer.weight.shape[1:]) > 0:
            nn.init.orthogonal_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()
    was_training = model.training
    model.eval()
    for layer in layers:
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        for _ in range(max_iters):
            captured.clear()
            model(batch)
            std = float(captured[0].std())
            if not math.isfinite(std) or std < 1e-8 or abs(std - 1.0) < tol:
                break
            layer.weight.div_(std)
        handle.remove()
    model.train(was_training)
    return model
