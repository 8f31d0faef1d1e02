"""CPU forward+backward timing of the layer library against the dense / seed / hand-written versions.

Usage: ``python benchmarks/layers.py [--json] [--repeats N] [--write-results]``

Three ratios, each ``other_time / our_time`` (higher is better for the library):

1. ``grouped_vs_dense_block``: ``PermutedGroupConv`` cycle(4) against the same function as one dense conv whose
   kernel has zero blocks (target >= 3).
2. ``twist_vs_reference``: ``TwistConv`` against the seed's ConvTwist forward (dense block kernel rebuilt with Python
   loops every call, three dense convs, coordinates from ``np.indices``), same weights (target >= 3).
3. ``compiled_vs_handwritten``: ``build_model`` of two zoo genomes against hand-written modules, same weights; the
   lower of the two (target >= 0.95, i.e. compiled at most ~5% slower).

Every pair is checked for equal outputs before it is timed. Contenders are interleaved round by round (order
alternating); a ratio is the median of the per-round ratios, so load that drifts over the run cancels. The machine is
shared: OpenMP threads default to passive waiting (``OMP_WAIT_POLICY=PASSIVE`` unless set), because spinning threads
on an oversubscribed machine made a 10 ms step take 400 ms.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP: before the imports below

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _results import RESULTS, write_section  # noqa: E402  (benchmarks/ is the script's folder)
from search_space import build_model, get_zoo, layers  # noqa: E402

THREADS = 2
SECTION = "## Layers"
TARGETS = {"grouped_vs_dense_block": 3.0, "twist_vs_reference": 3.0, "compiled_vs_handwritten": 0.95}


class ParityError(RuntimeError):
    """Two contenders that should compute the same function do not: the timing would be meaningless."""


def check_close(what: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> float:
    """Max absolute difference of ``got`` and ``want``; a ParityError naming ``what`` when above ``tol``."""
    diff = float((got.detach() - want.detach()).abs().max())
    if not diff <= tol:
        raise ParityError(f"{what}: outputs differ by {diff:.3g} (max abs), tolerance {tol:g}")
    return diff


# -- timing -----------------------------------------------------------------------------------------------


def fwd_bwd(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training step's compute without the optimizer: forward, ``sum().backward()``, grads dropped first."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        model(x).sum().backward()
    return step


def time_interleaved(contenders: dict[str, Callable[[], None]], rounds: int,
                     sample_s: float = 0.05) -> dict[str, dict]:
    """Per-call times (ms) of each contender, timed in alternating order over ``rounds`` rounds, with their median.

    Each contender first runs untimed (warm-up, allocator, calibration), then gets ``inner`` calls per sample so that
    one sample lasts about ``sample_s`` (fast models are timed in batches, slow ones call by call).
    """
    inner = {}
    for name, fn in contenders.items():
        fn()
        once = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            once.append(time.perf_counter() - start)
            if once[-1] > sample_s:
                break
        inner[name] = max(1, math.ceil(sample_s / max(min(once), 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, n = contenders[name], inner[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: {"median_ms": 1e3 * statistics.median(s), "min_ms": 1e3 * min(s), "calls_per_sample": inner[name],
                   "samples_ms": [round(1e3 * t, 3) for t in s]}
            for name, s in samples.items()}


def paired_ratio(times: dict[str, dict], other: str, ours: str) -> float:
    """``median_r(other_r / ours_r)`` over rounds r: each round's two samples ran back to back, under the same load."""
    return statistics.median(o / u for o, u in zip(times[other]["samples_ms"], times[ours]["samples_ms"]))


# -- 1. PermutedGroupConv vs one dense conv with zero blocks ----------------------------------------------


def dense_block_conv(grouped: layers.PermutedGroupConv) -> nn.Conv2d:
    """The dense conv equal to ``grouped``: its grouped weight scattered to the columns its gather reads."""
    conv = grouped.conv
    out_ch, per_group, kh, kw = conv.weight.shape
    groups = conv.groups
    order = grouped.gather.order
    dense = nn.Conv2d(conv.in_channels, out_ch, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      bias=conv.bias is not None)
    weight = torch.zeros_like(dense.weight)
    rows = torch.arange(out_ch).view(groups, out_ch // groups)
    cols = order.view(groups, per_group)
    weight[rows[:, :, None], cols[:, None, :]] = conv.weight.detach().view(groups, out_ch // groups, per_group, kh, kw)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if conv.bias is not None:
            dense.bias.copy_(conv.bias)
    return dense


def check_cycle_blocks(dense: nn.Conv2d, groups: int, cycle: int) -> None:
    """The dense kernel's non-zero blocks are exactly 'output group i reads input group i-1 inside each cycle'."""
    per_out, per_in = dense.out_channels // groups, dense.in_channels // groups
    used = dense.weight.detach().abs().sum((2, 3)).view(groups, per_out, groups, per_in).abs().sum((1, 3)) > 0
    want = torch.zeros(groups, groups, dtype=torch.bool)
    for i in range(groups):
        start = i - i % cycle
        want[i, start + (i - 1 - start) % cycle] = True
    if not torch.equal(used, want):
        raise ParityError(f"group pattern 'cycle'={cycle}: block mask {used.int().tolist()} is not the cycle pattern")


def bench_grouped_vs_dense(rounds: int) -> dict:
    torch.manual_seed(0)
    groups, cycle = 16, 4
    ours = layers.PermutedGroupConv(2, 128, 128, 3, padding=1, groups=groups, pattern="cycle", cycle=cycle)
    dense = dense_block_conv(ours)
    check_cycle_blocks(dense, groups, cycle)
    x = torch.randn(32, 128, 32, 32)
    with torch.no_grad():
        diff = check_close("PermutedGroupConv vs dense block conv", ours(x), dense(x), 1e-5)
    formats = {}
    for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        ours_f, dense_f = ours.to(memory_format=fmt), dense.to(memory_format=fmt)
        xf = x.to(memory_format=fmt).requires_grad_(True)
        times = time_interleaved({"grouped": fwd_bwd(ours_f, xf), "dense": fwd_bwd(dense_f, xf)}, rounds)
        formats[fmt_name] = {"ratio": paired_ratio(times, "dense", "grouped"), "times": times}
    best = max(formats, key=lambda f: formats[f]["ratio"])
    rows = [_row(f"grouped_vs_dense_block ({f})", v["times"]["grouped"], v["times"]["dense"], v["ratio"], f == best)
            for f, v in formats.items()]
    return {"value": formats[best]["ratio"], "format": best, "formats": formats, "max_abs_diff": diff, "rows": rows,
            "config": "PermutedGroupConv(2, 128, 128, 3, padding=1, groups=16, pattern='cycle', cycle=4), "
                      "x (32, 128, 32, 32), input requires grad"}


# -- 2. TwistConv vs the seed's ConvTwist -----------------------------------------------------------------


class SeedConvTwist(nn.Module):
    """The seed's ConvTwist (003), forward as written; benchmark-only, never part of the library.

    Changes, all for the parity check: ``groups`` is taken as given (the seed overrides it to ``ni // 32`` when
    ``ni % 64 == 0``); ``cycle`` splits the seed's one cycle over all groups into blocks (``cycle == groups`` is the
    seed's own pattern, same number of loop iterations either way); ``coords='linspace'`` swaps the seed's
    ``indices*2/w - 1`` for the library's ``linspace(-1, 1)`` grid.
    """

    def __init__(self, ni: int, nf: int, stride: int = 1, groups: int = 2, iters: int = 1, cycle: int | None = None,
                 coords: str = "seed"):
        super().__init__()
        self.same = ni == nf and stride == 1
        self.conv = nn.Conv2d(ni, nf, kernel_size=3, stride=stride, padding=1, bias=False, groups=groups)
        std = self.conv.weight.std().item()
        self.coeff_Ax = nn.Parameter(torch.empty((nf, ni // groups)).normal_(0, std), requires_grad=True)
        self.coeff_Ay = nn.Parameter(torch.empty((nf, ni // groups)).normal_(0, std), requires_grad=True)
        self.iters, self.stride, self.groups = iters, stride, groups
        self.cycle = cycle or groups
        self.coords = coords

    def kernel(self, coeff_x: torch.Tensor, coeff_y: torch.Tensor) -> torch.Tensor:
        D_x = torch.Tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]).to(coeff_x.device)
        D_y = torch.Tensor([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]).to(coeff_x.device)
        return coeff_x[:, :, None, None] * D_x + coeff_y[:, :, None, None] * D_y

    def full_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """Seed's loop: output group i reads input group i-1; here per block of ``cycle`` groups (seed: one block)."""
        if self.groups == 1:
            return kernel
        n, m = self.groups, self.cycle
        a, b, _, _ = kernel.size()
        a //= n
        KK = torch.zeros((a * n, b * n, 3, 3)).to(kernel.device)
        for s in range(0, n, m):
            KK[a * s:a * (s + 1), b * (s + m - 1):b * (s + m)] = kernel[a * s:a * (s + 1)]
            for i in range(s + 1, s + m):
                KK[a * i:a * (i + 1), b * (i - 1):b * i] = kernel[a * i:a * (i + 1)]
        return KK

    def _conv(self, inpt: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        if kernel is None:
            kernel = self.conv.weight
        if self.groups == 1:
            return F.conv2d(inpt, kernel, padding=1, stride=self.stride, groups=self.groups)
        return F.conv2d(inpt, self.full_kernel(kernel), padding=1, stride=self.stride, groups=1)

    def _grid(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, h, w = out.size()
        if self.coords == "linspace":
            return (torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).type(out.dtype),
                    torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).type(out.dtype))
        XX = torch.from_numpy(np.indices((1, 1, h, w))[3] * 2 / w - 1).type(out.dtype).to(out.device)
        YY = torch.from_numpy(np.indices((1, 1, h, w))[2] * 2 / h - 1).type(out.dtype).to(out.device)
        return XX, YY

    def forward(self, inpt: torch.Tensor) -> torch.Tensor:
        out = self._conv(inpt)
        XX, YY = self._grid(out)
        kernel_x = self.kernel(self.coeff_Ax, self.coeff_Ay)
        kernel_y = kernel_x.transpose(2, 3).flip(3)
        out = out + XX * self._conv(inpt, kernel_x) + YY * self._conv(inpt, kernel_y)
        if self.same and self.iters > 1:
            out = inpt + out / self.iters
            for _ in range(self.iters - 1):
                step = self._conv(out) + XX * self._conv(out, kernel_x) + YY * self._conv(out, kernel_y)
                out = out + step / self.iters
            out = out - inpt
        return out


def seed_twist_like(ours: layers.TwistConv, cycle: int, coords: str) -> SeedConvTwist:
    """A SeedConvTwist carrying ``ours``' weights (conv weight, coeff_x -> coeff_Ax, coeff_y -> coeff_Ay)."""
    conv = ours.conv
    ref = SeedConvTwist(conv.in_channels, conv.out_channels, conv.stride[0], conv.groups, ours.iters, cycle, coords)
    with torch.no_grad():
        ref.conv.weight.copy_(conv.weight)
        ref.coeff_Ax.copy_(ours.coeff_x)
        ref.coeff_Ay.copy_(ours.coeff_y)
    return ref


def check_twist_parity(ours: layers.TwistConv, ref: SeedConvTwist, x: torch.Tensor, what: str) -> dict:
    """Equal outputs (1e-4) and equal gradients (1e-4 of their scale) of the input and of the three weights."""
    xs = [x.detach().clone().requires_grad_(True) for _ in range(2)]
    outs = [ours(xs[0]), ref(xs[1])]
    diff = check_close(what, outs[0], outs[1], 1e-4)
    for out in outs:
        out.square().sum().backward()
    pairs = {"input": (xs[0].grad, xs[1].grad), "weight": (ours.conv.weight.grad, ref.conv.weight.grad),
             "coeff_x": (ours.coeff_x.grad, ref.coeff_Ax.grad), "coeff_y": (ours.coeff_y.grad, ref.coeff_Ay.grad)}
    for name, (g_ours, g_ref) in pairs.items():
        check_close(f"{what}: gradient of {name}", g_ours, g_ref, 1e-4 * float(g_ref.abs().max()))
    for module in (ours, ref):
        module.zero_grad(set_to_none=True)
    return {"max_abs_diff": diff}


def bench_twist_vs_reference(rounds: int) -> dict:
    torch.manual_seed(0)
    groups, cycle = 16, 4
    x = torch.randn(32, 128, 32, 32)
    ours = layers.TwistConv(2, 128, 128, (32, 32), groups=groups, pattern="cycle", cycle=cycle)
    ref = seed_twist_like(ours, cycle, "linspace")
    parity = {"cycle4_blocks": check_twist_parity(ours, ref, x, "TwistConv cycle=4 vs seed loop per 4-group block")}
    whole = layers.TwistConv(2, 128, 128, (32, 32), groups=groups, pattern="cycle", cycle=groups)
    parity["cycle16_seed_pattern"] = check_twist_parity(whole, seed_twist_like(whole, groups, "linspace"), x,
                                                        "TwistConv cycle=16 vs seed's full_kernel as written")
    euler = layers.TwistConv(2, 128, 128, (32, 32), groups=groups, pattern="cycle", cycle=cycle, iters=4)
    parity["iters4_batch4"] = check_twist_parity(euler, seed_twist_like(euler, cycle, "linspace"), x[:4],
                                                 "TwistConv iters=4 vs the seed's iterated forward")
    ref.coords = "seed"
    with torch.no_grad():
        parity["seed_coords_max_abs_diff"] = float((ours(x) - ref(x)).abs().max())
    xg = x.clone().requires_grad_(True)
    times = time_interleaved({"ours": fwd_bwd(ours, xg), "reference": fwd_bwd(ref, xg)}, rounds)
    value = paired_ratio(times, "reference", "ours")
    return {"value": value, "times": times, "parity": parity,
            "rows": [_row("twist_vs_reference", times["ours"], times["reference"], value, True)],
            "config": "TwistConv(2, 128, 128, (32, 32), groups=16, pattern='cycle', cycle=4), iters=1, "
                      "x (32, 128, 32, 32), input requires grad; reference: seed forward, loop per 4-group block, "
                      "np.indices coordinates (parity of outputs and gradients checked on the linspace grid; also "
                      "cycle=16 against the seed's full_kernel as written, and iters=4)"}


# -- 3. compiled genomes vs hand-written modules ----------------------------------------------------------


def _seed_perm(size: int, seed: int) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))


class HandPermCNN(nn.Module):
    """perm-cnn by hand: (64, 48) map, three Conv1d k5 (strides 2, 2, 3) with permutes + dropout between, dense."""

    def __init__(self, classes: int = 100):
        super().__init__()
        self.conv0 = nn.Conv1d(64, 64, 5, stride=2, padding=2)
        self.conv1 = nn.Conv1d(64, 64, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(64, 64, 5, stride=3, padding=2)
        self.register_buffer("perm0", _seed_perm(24, 1))
        self.register_buffer("perm1", _seed_perm(12, 2))
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.25)
        self.logits = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], 64, 48)
        x = self.drop(self.relu(self.conv0(x))[:, :, self.perm0])
        x = self.drop(self.relu(self.conv1(x))[:, :, self.perm1])
        return self.logits(self.relu(self.conv2(x)).flatten(1))


class HandAllCNNC(nn.Module):
    """All-CNN-C by hand: seven 3x3 convs (strides 1,1,2,1,1,2,1; last unpadded), 1x1 192, 1x1 classes, mean."""

    def __init__(self, classes: int = 10):
        super().__init__()
        spec = [(3, 96, 1, 1), (96, 96, 1, 1), (96, 96, 2, 1), (96, 192, 1, 1), (192, 192, 1, 1), (192, 192, 2, 1),
                (192, 192, 1, 0)]
        body: list[nn.Module] = []
        for cin, cout, stride, pad in spec:
            body += [nn.Conv2d(cin, cout, 3, stride, pad), nn.ReLU()]
        body += [nn.Conv2d(192, 192, 1), nn.ReLU(), nn.Conv2d(192, classes, 1)]
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copies parameters in registration order, checking each pair's shape."""
    src_params, dst_params = list(src.parameters()), list(dst.parameters())
    if [p.shape for p in src_params] != [p.shape for p in dst_params]:
        raise ParityError(f"parameter shapes differ: {[tuple(p.shape) for p in src_params]} vs "
                          f"{[tuple(p.shape) for p in dst_params]}")
    with torch.no_grad():
        for s, d in zip(src_params, dst_params):
            d.copy_(s)


def bench_compiled_vs_handwritten(rounds: int) -> dict:
    torch.manual_seed(0)
    cases = {"perm-cnn": (HandPermCNN(), torch.randn(64, 3072)),
             "all-cnn-c": (HandAllCNNC(), torch.randn(16, 3, 32, 32))}
    models = {}
    for name, (hand, x) in cases.items():
        compiled = build_model(get_zoo(name).build())
        copy_weights(compiled, hand)
        compiled.eval(), hand.eval()
        with torch.no_grad():
            diff = check_close(f"{name}: compiled vs hand-written", compiled(x), hand(x), 1e-5)
        compiled.train(), hand.train()
        times = time_interleaved({"compiled": fwd_bwd(compiled, x), "handwritten": fwd_bwd(hand, x)}, rounds)
        models[name] = {"ratio": paired_ratio(times, "handwritten", "compiled"), "times": times,
                        "max_abs_diff": diff, "input": list(x.shape)}
    worst = min(models, key=lambda m: models[m]["ratio"])
    rows = [_row(f"compiled_vs_handwritten ({m})", v["times"]["compiled"], v["times"]["handwritten"], v["ratio"],
                 m == worst) for m, v in models.items()]
    return {"value": models[worst]["ratio"], "worst": worst, "models": models, "rows": rows,
            "config": "train mode (dropout on), forward + sum().backward(); parity checked in eval mode"}


# -- report -----------------------------------------------------------------------------------------------


def _row(label: str, ours: dict, other: dict, ratio: float, headline: bool) -> dict:
    """One table row as plain data: both medians, the paired ratio, the ratio of the fastest samples."""
    return {"label": label, "ours_ms": ours["median_ms"], "other_ms": other["median_ms"], "ratio": ratio,
            "ratio_of_mins": other["min_ms"] / ours["min_ms"], "headline": headline}


def table(results: dict) -> str:
    """Markdown table of every timed pair; the row that gives a key its value carries the target and verdict."""
    lines = ["| benchmark | ours (ms) | other (ms) | ratio | ratio of mins | target |", "|---|---:|---:|---:|---:|---|"]
    for key, result in results.items():
        if "error" in result:
            lines.append(f"| {key} | - | - | - | - | ERROR: {result['error']} |")
            continue
        for r in result["rows"]:
            verdict = f"**>= {TARGETS[key]:g} {'PASS' if r['ratio'] >= TARGETS[key] else 'FAIL'}**" \
                if r["headline"] else ""
            lines.append(f"| {r['label']} | {r['ours_ms']:.1f} | {r['other_ms']:.1f} | {r['ratio']:.2f}x "
                         f"| {r['ratio_of_mins']:.2f}x | {verdict} |")
    return "\n".join(lines)


NOTE = ("Times are medians of forward + `sum().backward()` per call over interleaved rounds; ratio = median over "
        "rounds of other / ours (higher favours the library), `ratio of mins` compares the fastest samples. Every "
        "pair is checked for equal outputs before timing. Grouped: the headline is the better memory format (both "
        "contenders in it). Twist: the reference is the seed's ConvTwist forward with its Python-loop `full_kernel` "
        "per 4-group block and `np.indices` coordinates; outputs and gradients are checked on the library's linspace "
        "grid, for cycle=4, for cycle=16 against the seed's `full_kernel` as written, and for iters=4. Compiled: "
        "train mode (dropout on), the lower of the two models.")


def results_section(text: str, meta: dict) -> str:
    return (f"{SECTION}\n\n{text}\n\n{NOTE}\n\n- date: {meta['date']}\n- torch: {meta['torch']}\n"
            f"- CPU threads: {meta['threads']} ({meta['cpu']}, {meta['cpus_visible']} visible; load average "
            f"{meta['load_before']} before, {meta['load_after']} after)\n"
            f"- rounds: {meta['rounds']}, total {meta['seconds']:.0f} s, OMP_WAIT_POLICY={meta['omp_wait_policy']}\n"
            f"- command: `{meta['command']}`\n")


def _machine() -> dict:
    """CPU model and 1-minute load average: other jobs on this shared machine show up in the load."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*:\s*(.*)", cpuinfo.read_text()) if cpuinfo.exists() else []
    return {"cpu": names[0] if names else platform.machine(), "load": round(os.getloadavg()[0], 1)}


BENCHMARKS = {"grouped_vs_dense_block": bench_grouped_vs_dense, "twist_vs_reference": bench_twist_vs_reference,
              "compiled_vs_handwritten": bench_compiled_vs_handwritten}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds per pair (default 15)")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of {RESULTS}")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    torch.set_num_threads(THREADS)
    started, before = time.perf_counter(), _machine()
    results: dict[str, dict] = {}
    for key, bench in BENCHMARKS.items():
        try:
            results[key] = bench(args.repeats)
        except ParityError as exc:
            results[key] = {"error": str(exc)}
        if not args.json:
            print(f"{key}: " + (f"{results[key]['value']:.2f}x" if "value" in results[key] else results[key]["error"]),
                  file=sys.stderr, flush=True)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu": before["cpu"],
            "cpus_visible": os.cpu_count(), "load_before": before["load"], "load_after": _machine()["load"],
            "rounds": args.repeats,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "seconds": time.perf_counter() - started,
            "command": shlex.join([sys.executable, *sys.argv])}
    text = table(results)
    if args.write_results:
        write_section(results_section(text, meta))
    if args.json:
        payload = {key: results[key].get("value") for key in BENCHMARKS}
        payload["details"] = {**results, "meta": meta, "targets": TARGETS}
        print(json.dumps(payload, indent=1))
    else:
        print(text)
        print(f"\ntorch {meta['torch']}, {meta['threads']} threads, {args.repeats} rounds, {meta['seconds']:.0f} s")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
