"""``nas baseline --dataset SPEC``: the tuned dense (MLP) baseline's accuracy-vs-params front."""
from __future__ import annotations

import argparse

from nas.cli.output import console


def register(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("baseline", help="search MLPs for a dataset's tuned dense baseline front")
    base.add_argument("--dataset", required=True, help="mnist1d, mnist1d:permute, digits, or a YAML/JSON spec file")
    base.add_argument("--trials", type=int, default=12)
    base.add_argument("--epochs", type=int, default=18)
    base.add_argument("--workers", type=int, default=1)
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--storage", default="sqlite:///runs/baselines/study.db")
    base.add_argument("--json", action="store_true")
    base.set_defaults(handler=baseline_command)


def baseline_command(args: argparse.Namespace) -> int:
    from evaluators.datasets import parse_dataset_spec
    from nas.cli.output import print_json, print_summary
    from nas.cli.progress import ConsoleReporter
    from nas.execution.local import LocalBackend
    from nas.study.config import parse_config
    from nas.study.plan import RunPlan, baseline_config
    from nas.study.run import run_plan
    from nas.study.summary import study_summary

    spec = parse_dataset_spec(args.dataset).to_dict()
    config = parse_config({"name": "baseline", "dataset": spec, "baseline": {"trials": args.trials},
                           "pruner": {"name": "none", "min_epochs": args.epochs, "max_epochs": args.epochs},
                           "sampler": {"seed": args.seed}, "execution": {"workers": args.workers}}, "--dataset")
    plan = RunPlan(baseline_config(config), args.storage)
    study = run_plan(plan, LocalBackend(args.workers), None, ConsoleReporter(console),
                     f"dense baseline ({plan.config.name})")
    summary = study_summary(study)
    print_json(summary) if args.json else print_summary(summary)
    return 0
