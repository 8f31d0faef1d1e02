"""``nas baseline STUDY.yaml``: the study's tuned dense (MLP) baseline alone, where ``nas run`` reads it.

``nas baseline --dataset SPEC`` tunes one for a bare dataset (default limits) in its own storage, to explore.
"""
from __future__ import annotations

import argparse

from nas.cli.output import console
from nas.cli.target import add_storage_argument


def register(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("baseline", help="tune the dense (MLP) baseline of a study, or of a dataset")
    which = base.add_mutually_exclusive_group(required=True)
    which.add_argument("study", nargs="?", help="study YAML file: its baseline, in its storage (what nas run reads)")
    which.add_argument("--dataset", help="mnist1d, mnist1d:permute, digits, or a YAML/JSON spec file: a standalone "
                                         "baseline in --storage (default sqlite:///runs/baselines/study.db)")
    base.add_argument("--trials", type=int, help="baseline trials (overrides baseline.trials)")
    base.add_argument("--epochs", type=int, default=18, help="with --dataset: the full training budget")
    base.add_argument("--workers", type=int, help="concurrent trials (overrides execution.workers)")
    base.add_argument("--seed", type=int, default=0, help="with --dataset: the sampler seed")
    add_storage_argument(base)
    base.add_argument("--json", action="store_true")
    base.set_defaults(handler=baseline_command)


def baseline_command(args: argparse.Namespace) -> int:
    from evaluators.datasets import parse_dataset_spec
    from nas.cli.output import print_json, print_summary
    from nas.cli.progress import ConsoleReporter
    from nas.errors import ConfigError
    from nas.execution.local import LocalBackend
    from nas.study.config import load_config, parse_config
    from nas.study.plan import RunPlan, baseline_config, create_study
    from nas.study.records import write_study
    from nas.study.run import preflight, run_plan
    from nas.study.summary import study_summary

    if args.study:
        config = load_config(args.study)
        url = args.storage or config.storage_url()
    else:
        spec = parse_dataset_spec(args.dataset).to_dict()
        config = parse_config({"name": "baseline", "dataset": spec,
                               "pruner": {"name": "none", "min_epochs": args.epochs, "max_epochs": args.epochs},
                               "sampler": {"seed": args.seed}}, "--dataset")
        url = args.storage or "sqlite:///runs/baselines/study.db"
    data = config.model_dump(mode="json")
    if args.trials is not None:
        data["baseline"] = {**data["baseline"], "trials": args.trials}  # its max_params and warm starts stay
    if args.workers is not None:
        data["execution"] = {**data["execution"], "workers": args.workers}
    config = parse_config(data, args.study or "--dataset")
    if config.baseline.trials < 1:
        raise ConfigError("baseline.trials: 0 turns the dense baseline off; give --trials N to tune one")
    preflight(config)
    plan = RunPlan(baseline_config(config), url)
    if args.study:  # link it as nas run does, so status and the report compare against it
        write_study(create_study(config, url), baseline_study=plan.config.name)
    study = run_plan(plan, LocalBackend(config.execution.workers), None, ConsoleReporter(console),
                     f"dense baseline ({plan.config.name})")
    summary = study_summary(study)
    print_json(summary) if args.json else print_summary(summary)
    return 0
