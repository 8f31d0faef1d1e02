"""``nas run STUDY.yaml``: the dense baseline if missing, then the search, then the Pareto set."""
from __future__ import annotations

import argparse

from nas.cli.output import console, print_summary
from nas.cli.target import add_storage_argument


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run (or resume) a search study")
    run.add_argument("study", help="study YAML file, e.g. studies/quickstart.yaml")
    run.add_argument("--trials", type=int, help="trial budget (overrides budget.trials)")
    run.add_argument("--minutes", type=float, help="wall-clock budget (overrides budget.minutes)")
    run.add_argument("--workers", type=int, help="concurrent trials (overrides execution.workers)")
    run.add_argument("--backend", choices=["local", "ray"], help="overrides execution.backend")
    run.add_argument("--ray-address", help="join this Ray cluster (auto or HOST:PORT) instead of starting one")
    run.add_argument("--seed", type=int, help="sampler seed (overrides sampler.seed)")
    run.add_argument("--simulate", action="store_true",
                     help="synthetic learning curves instead of training: measures sampling, rungs, dedup and "
                          "storage (execution.simulate)")
    add_storage_argument(run)
    run.set_defaults(handler=run_command)


def apply_overrides(data: dict, args: argparse.Namespace) -> dict:
    """The config dict with command-line values written into their keys (validated afterwards)."""
    data = dict(data)
    sections = {"budget": {"trials": args.trials, "minutes": args.minutes},
                "execution": {"workers": args.workers, "backend": args.backend,
                              "simulate": True if getattr(args, "simulate", False) else None},
                "sampler": {"seed": args.seed}}
    for section, values in sections.items():
        chosen = {k: v for k, v in values.items() if v is not None}
        if chosen:
            data[section] = {**(data.get(section) or {}), **chosen}
    if args.storage:
        data["storage"] = args.storage
    return data


def run_command(args: argparse.Namespace) -> int:
    from nas.cli.progress import ConsoleReporter
    from nas.search.samplers import sampler_note
    from nas.study.config import load_config, parse_config
    from nas.study.run import run_study
    from nas.study.summary import study_summary

    config = load_config(args.study)
    config = parse_config(apply_overrides(config.model_dump(mode="json", exclude_unset=True), args), args.study)
    note = sampler_note(config)
    if note:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)  # one line
    if config.execution.backend == "ray":
        from nas.execution.ray.driver import RayBackend

        backend = RayBackend(address=args.ray_address, warn=console.print)
    else:
        from nas.execution.local import LocalBackend

        backend = LocalBackend(config.execution.workers)
    study, baseline = run_study(config, config.storage_url(), backend, ConsoleReporter(console))
    print_summary(study_summary(study, baseline))
    return 0
