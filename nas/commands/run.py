"""``nas run STUDY.yaml``: the dense baseline if missing, then the search, then the Pareto set."""
from __future__ import annotations

import argparse

from nas.commands.output import console
from nas.commands.target import add_storage_argument


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run (or resume) a search study")
    run.add_argument("study", help="study YAML file, e.g. studies/quickstart.yaml")
    run.add_argument("--trials", type=int, help="trial budget (overrides budget.trials)")
    run.add_argument("--minutes", type=float, help="wall-clock budget (overrides budget.minutes)")
    run.add_argument("--workers", type=int, help="concurrent trials (overrides execution.workers)")
    run.add_argument("--backend", choices=["local", "ray"], help="overrides execution.backend")
    run.add_argument("--ray-address", help="join this Ray cluster (auto or HOST:PORT) instead of starting one")
    run.add_argument("--seed", type=int, help="sampler seed (overrides sampler.seed)")
    add_storage_argument(run)
    run.set_defaults(handler=run_command)


def apply_overrides(data: dict, args: argparse.Namespace) -> dict:
    """The config dict with command-line values written into their keys (validated afterwards)."""
    data = dict(data)
    sections = {"budget": {"trials": args.trials, "minutes": args.minutes},
                "execution": {"workers": args.workers, "backend": args.backend},
                "sampler": {"seed": args.seed}}
    for section, values in sections.items():
        chosen = {k: v for k, v in values.items() if v is not None}
        if chosen:
            data[section] = {**(data.get(section) or {}), **chosen}
    if args.storage:
        data["storage"] = args.storage
    return data


def run_command(args: argparse.Namespace) -> int:
    from nas.commands.status import print_summary
    from nas.config import load_config, parse_config
    from nas.study import run_study
    from nas.summary import study_summary

    config = load_config(args.study)
    config = parse_config(apply_overrides(config.model_dump(mode="json", exclude_unset=True), args), args.study)
    url = config.storage_url()
    if config.execution.backend == "ray":
        from nas.ray_backend import run_study_on_ray

        study, baseline = run_study_on_ray(config, url, address=args.ray_address, console=console)
    else:
        study, baseline = run_study(config, url, console=console)
    print_summary(study_summary(study, baseline))
    return 0
