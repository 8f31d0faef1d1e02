"""``nas export STUDY_OR_YAML --out DIR``: a trial's network as a standalone PyTorch bundle."""
from __future__ import annotations

import argparse

from nas.cli.output import console
from nas.cli.target import add_storage_argument, resolve_target
from nas.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="write a trial's network as model.py, weights, torch.export (and ONNX)")
    export.add_argument("study", help="study YAML file or study name")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="this trial number")
    which.add_argument("--best-accuracy", action="store_true",
                       help="the most accurate Pareto trial (the default)")
    which.add_argument("--max-params", type=float, metavar="P",
                       help="the most accurate Pareto trial with at most P parameters")
    export.add_argument("--out", required=True, help="folder for the bundle (created if missing)")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (needs onnx and onnxscript)")
    export.add_argument("--fold-bn", action="store_true",
                        help="fold each BatchNorm that directly follows a conv or dense layer (its only "
                             "consumer) into it; the others are kept and listed")
    export.add_argument("--retrain", action="store_true",
                        help="train the trial again at full budget when its weights were not saved")
    add_storage_argument(export)
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from nas.export.from_study import export_trial

    if args.max_params is not None and args.max_params <= 0:
        raise ConfigError(f"--max-params must be positive, got {args.max_params:g}")
    name, url, _ = resolve_target(args.study, args.storage)
    bundle = export_trial(name, url, args.out, number=args.trial, max_params=args.max_params,
                          fold_bn=args.fold_bn, onnx=args.onnx, retrain=args.retrain, say=console.print)
    m = bundle.manifest
    metrics = m["metrics"]
    test = "-" if metrics["test_accuracy"] is None else f"{100 * metrics['test_accuracy']:.2f}%"
    console.print(f"exported trial {m['trial']} of study {m['study']!r} to {bundle.out}: "
                  f"val {100 * metrics['val_accuracy']:.2f}%, test {test}, {metrics['params']:,} params, "
                  f"{metrics['flops']:,} FLOPs")
    console.print("files: " + ", ".join(bundle.files))
    checks = ", ".join(f"{name} {diff:.1e}" if diff is not None else f"{name} not checked (no onnxruntime)"
                       for name, diff in bundle.parity.items())
    console.print(f"max |logit difference| against the in-project model: {checks}")
    if bundle.test_accuracy is not None:
        console.print(f"test accuracy of the exported network: {100 * bundle.test_accuracy:.2f}%")
    if bundle.fold is not None:
        f = bundle.fold
        console.print(f"--fold-bn: folded {len(f['folded'])} BatchNorm(s)"
                      + (f", kept {len(f['kept'])} that cannot fold ({', '.join(f['kept'])})" if f["kept"] else "")
                      + f"; params {f['params_before']:,} -> {f['params_after']:,} (saved {f['params_saved']:,}); "
                      f"FLOPs {f['flops']:,} (conv and dense, unchanged); BatchNorm multiply-adds saved per sample "
                      f"{f['bn_multiply_adds_saved']:,}")
    return 0
