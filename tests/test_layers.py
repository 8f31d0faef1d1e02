"""The layer library's math: group patterns, Twist, decompositions, permutations and LSUV."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_space import layers


def dense_block_kernel(weight: torch.Tensor, in_channels: int, groups: int, source_group) -> torch.Tensor:
    """The grouped weight scattered into a dense kernel: output group i reads input group source_group(i)."""
    out_channels = weight.shape[0]
    a, b = out_channels // groups, in_channels // groups
    dense = torch.zeros(out_channels, in_channels, *weight.shape[2:], dtype=weight.dtype)
    for i in range(groups):
        j = source_group(i)
        dense[a * i:a * (i + 1), b * j:b * (j + 1)] = weight[a * i:a * (i + 1)]
    return dense


def test_cycle_pattern_equals_off_diagonal_dense_kernel():
    torch.manual_seed(0)
    groups, cycle = 8, 4
    conv = layers.PermutedGroupConv(2, 16, 24, 3, padding=1, groups=groups, pattern="cycle", cycle=cycle, bias=False)
    x = torch.randn(2, 16, 5, 5)
    source = lambda i: (i // cycle) * cycle + (i % cycle - 1) % cycle  # noqa: E731  group i reads i-1 in its block
    dense = dense_block_kernel(conv.conv.weight.detach(), 16, groups, source)
    assert torch.allclose(conv(x), F.conv2d(x, dense, padding=1), atol=1e-5)
    assert source(0) == 3 and source(4) == 7 and source(5) == 4


def test_shuffle_pattern_is_the_shufflenet_transpose():
    torch.manual_seed(0)
    conv = layers.PermutedGroupConv(1, 6, 6, 1, groups=3, pattern="shuffle", bias=False)
    x = torch.randn(1, 6, 4)
    shuffled = x.view(1, 3, 2, 4).transpose(1, 2).reshape(1, 6, 4)
    assert torch.allclose(conv(x), F.conv1d(shuffled, conv.conv.weight, groups=3))


def twist_by_formula(t: layers.TwistConv, x: torch.Tensor) -> torch.Tensor:
    """out = C(x;W) + X*C(x;Kx) + Y*C(x;Ky), written out with explicit Sobel kernels and a linspace grid."""
    dx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    dy = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
    kx = t.coeff_x[:, :, None, None] * dx + t.coeff_y[:, :, None, None] * dy
    ky = torch.rot90(kx, k=-1, dims=(2, 3))  # a 90-degree rotation of kx
    w = t.conv.weight
    conv = lambda k: F.conv2d(x, k, stride=t.stride, padding=1)  # noqa: E731
    out = conv(w)
    h, wd = out.shape[2:]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, wd), indexing="ij")
    return out + xs * conv(kx) + ys * conv(ky)


def test_twist_matches_its_formula():
    torch.manual_seed(0)
    t = layers.TwistConv(2, 3, 5, out_size=(4, 4), stride=2)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(t(x), twist_by_formula(t, x), atol=1e-5)


def test_twist_iterated_is_forward_euler():
    torch.manual_seed(0)
    t = layers.TwistConv(2, 4, 4, out_size=(6, 6), iters=3)
    x = torch.randn(1, 4, 6, 6)
    single = layers.TwistConv(2, 4, 4, out_size=(6, 6))
    single.load_state_dict(t.state_dict())
    y = x
    for _ in range(3):
        y = y + single(y) / 3
    assert torch.allclose(t(x), y - x, atol=1e-5)


def test_twist_with_cycle_groups_is_differentiable_end_to_end():
    torch.manual_seed(0)
    t = layers.TwistConv(2, 8, 8, out_size=(3, 3), groups=4, pattern="cycle", cycle=4, iters=2).double()
    x = torch.randn(1, 8, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(t, (x,), fast_mode=True)
    t(x).square().sum().backward()
    assert t.coeff_x.grad.abs().sum() > 0 and t.coeff_y.grad.abs().sum() > 0


def test_twist_1d_analogue():
    torch.manual_seed(0)
    t = layers.TwistConv(1, 2, 3, out_size=(7,))
    x = torch.randn(2, 2, 7)
    kx = t.coeff_x[:, :, None] * torch.tensor([-1.0, 0.0, 1.0])
    expected = F.conv1d(x, t.conv.weight, padding=1) + torch.linspace(-1, 1, 7) * F.conv1d(x, kx, padding=1)
    assert torch.allclose(t(x), expected, atol=1e-5)


def test_decompositions_are_their_compositions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 7)
    fac = layers.FactorizedConv2d(3, 4, 3, padding=1, act="none")
    full = F.conv2d(F.conv2d(x, fac.vertical.weight, fac.vertical.bias, padding=(1, 0)),
                    fac.horizontal.weight, fac.horizontal.bias, padding=(0, 1))
    assert torch.allclose(fac(x), full, atol=1e-5)
    # a rank-r factorization is one k x k conv whose kernel has rank <= r in its (out, in*k*k) view
    low = layers.LowRankConv(2, 3, 6, 3, rank=2, padding=1, bias=False)
    merged = torch.einsum("or,rikl->oikl", low.mix.weight[:, :, 0, 0], low.basis.weight)
    assert torch.allclose(low(x), F.conv2d(x, merged, padding=1), atol=1e-5)
    assert torch.linalg.matrix_rank(merged.flatten(1)) == 2


def test_permute_is_a_fixed_seeded_buffer():
    p = layers.Permute(10, seed=7)
    assert "index" in p.state_dict()
    assert torch.equal(p.index, layers.Permute(10, seed=7).index)
    assert not torch.equal(p.index, layers.Permute(10, seed=8).index)
    x = torch.arange(2 * 3 * 10, dtype=torch.float).view(2, 3, 10)
    y = p(x)
    assert torch.equal(y, x[:, :, p.index]) and torch.equal(y.sort(2).values, x)


def test_reduce_orders():
    conv_bn_act = layers.Reduce1x1(2, 8, 4, "conv-bn-act")
    bn_act_conv = layers.Reduce1x1(2, 8, 4, "bn-act-conv")
    assert [type(m) for m in conv_bn_act.block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in bn_act_conv.block] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert conv_bn_act.block[0].bias is None and bn_act_conv.block[2].bias is not None


def test_lsuv_gives_unit_output_variance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 5))
    batch = torch.randn(256, 20) * 5
    layers.lsuv_init(model, batch)
    with torch.no_grad():
        h = batch
        for layer in model:
            h = layer(h)
            if isinstance(layer, nn.Linear):
                assert abs(float(h.std()) - 1.0) < 0.06


def test_channels_last_gather_keeps_its_layout_and_values():
    torch.manual_seed(0)
    conv = layers.PermutedGroupConv(2, 16, 16, 3, padding=1, groups=8, pattern="cycle", cycle=4)
    x = torch.randn(2, 16, 5, 5)
    fast = x.to(memory_format=torch.channels_last)
    gathered = conv.gather(fast)
    assert gathered.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(gathered, conv.gather(x)) and torch.allclose(conv(fast), conv(x), atol=1e-5)
    shuffle = layers.PermutedGroupConv(2, 16, 16, 1, groups=4, pattern="shuffle")
    assert shuffle.gather.group_order is None and torch.equal(shuffle.gather(fast), shuffle.gather(x))
