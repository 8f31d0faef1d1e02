"""``nas findings STUDY_OR_YAML``: which design choices buy accuracy per parameter, from the storage alone."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from nas.cli.output import console, print_json
from nas.cli.target import add_storage_argument, resolve_target


def register(sub: argparse._SubParsersAction) -> None:
    findings = sub.add_parser("findings", help="which design choices buy accuracy per parameter (validation only)")
    findings.add_argument("study", help="study YAML file or study name")
    findings.add_argument("--json", action="store_true")
    findings.add_argument("--final", action="store_true",
                          help="retrain the chosen genomes at full budget on train+val and report test accuracy "
                               "(the only place test is read); the table is stored in the study")
    findings.add_argument("--seeds", type=int, default=3, help="with --final: seeds per genome (default 3)")
    findings.add_argument("--genomes", type=int, default=0,
                          help="with --final: also this many Pareto genomes spread along the front (default 0)")
    findings.add_argument("--also", nargs="*", default=[], metavar="ZOO",
                          help="with --final: also retrain these warm-start zoo models (e.g. lenet5)")
    findings.add_argument("--trials", type=int, nargs="*", default=[], metavar="N",
                          help="with --final: retrain these searched trials instead of the automatic picks")
    findings.add_argument("--recheck", type=int, metavar="K",
                          help="retrain the K most accurate trials as drawn on all training data (validation held "
                               "out; a study's train_samples dropped) and rank them again on validation; with "
                               "--final, the recheck's winner is retrained in place of the automatic picks")
    findings.add_argument("--recheck-seeds", type=int, default=1, metavar="S",
                          help="with --recheck: training seeds per trial, ranked by the mean (default 1)")
    findings.add_argument("--threads", type=int, help="with --final or --recheck: torch threads (default: torch's own)")
    add_storage_argument(findings)
    findings.set_defaults(handler=findings_command)


def findings_command(args: argparse.Namespace) -> int:
    from nas.errors import ConfigError
    from nas.study.final import final_table, stored_final, zoo_trials
    from nas.study.recheck import recheck, stored_recheck
    from nas.study.storage import load_study, load_with_baseline
    from nas.study.summary import params_reference
    from reports.findings import findings_data

    name, url, _ = resolve_target(args.study, args.storage)
    say = (lambda _: None) if args.json else console.print
    numbers = args.trials
    if args.final:  # before a recheck: a bad argument must not wait for its retraining
        if args.seeds < 1 or args.genomes < 0:
            raise ConfigError(f"--seeds must be at least 1 and --genomes at least 0, got {args.seeds} and "
                              f"{args.genomes}")
        zoo_trials(load_study(name, url), args.also)
    if args.recheck is not None:  # its winner goes first among the trials --final retrains
        rows = recheck(name, url, args.recheck, seeds=range(args.recheck_seeds), threads=args.threads, say=say)
        numbers = [rows[0].trial, *(n for n in args.trials if n != rows[0].trial)]
    if args.final:
        final_table(name, url, seeds=range(args.seeds), count=args.genomes, also=args.also, numbers=numbers,
                    threads=args.threads, say=say)
    study, baseline = load_with_baseline(name, url)
    found = findings_data(study.get_trials(deepcopy=False),
                          baseline.get_trials(deepcopy=False) if baseline is not None else [], params_reference(study))
    data = {"study": name, "trained_trials": found.trained_trials, "choices": [asdict(r) for r in found.choices],
            "best_within_budgets": found.best_within_budgets,
            "ratios_at_matched_accuracy": [dict(zip(("dense_val_accuracy", "dense_params", "searched_params",
                                                     "ratio"), r)) for r in found.ratios],
            "recheck": [asdict(r) for r in stored_recheck(study)],
            "final": [{**asdict(r), "test_mean": r.test_mean, "test_sd": r.test_sd} for r in stored_final(study)]}
    print_json(data) if args.json else print_findings(data)
    return 0


def print_findings(data: dict) -> None:
    from rich.table import Table

    from reports.findings import ratio_words

    console.print(f"study [bold]{data['study']}[/bold]: {data['trained_trials']} trials trained at full budget "
                  "(validation accuracy only)")
    choices = Table("choice", "trials with", "without", "front HV with", "front HV without",
                    title="fronts with and without each design choice", title_justify="left")
    for r in sorted(data["choices"], key=lambda r: r["hv_without"] - r["hv_with"]):
        choices.add_row(r["choice"], str(r["with_trials"]), str(r["without_trials"]), f"{r['hv_with']:.3f}",
                        f"{r['hv_without']:.3f}")
    console.print(choices)
    budgets = sorted({b for row in data["best_within_budgets"].values() for b in row})
    table = Table("family", *(f"<= {b:,}" for b in budgets), title="best val accuracy within a parameter budget",
                  title_justify="left")
    for family, row in data["best_within_budgets"].items():
        table.add_row(family, *(f"{100 * row[b]:.1f}%" if b in row else "-" for b in budgets))
    console.print(table)
    if not data["ratios_at_matched_accuracy"]:
        console.print("no dense baseline point is reached by a searched trial (or the study has no baseline)")
    for r in data["ratios_at_matched_accuracy"]:
        console.print(f"dense {100 * r['dense_val_accuracy']:.1f}% with {r['dense_params']:,} params: reached by a "
                      f"searched genome with {r['searched_params']:,} ({ratio_words(r['ratio'])})")
    if data["recheck"]:
        print_recheck(data["recheck"])
    if data["final"]:
        print_final(data["final"])


def print_recheck(rows: list[dict]) -> None:
    import statistics

    from rich.table import Table

    seeds = len(rows[0]["val_accuracies"])
    table = Table("trial", "what", "params", "val (search)", f"val, all training data ({seeds} seeds)",
                  title="recheck: the most accurate trials retrained on all training data (validation only)",
                  title_justify="left")
    for r in rows:
        table.add_row(str(r["trial"]), r["summary"], f"{r['params']:,}", f"{100 * r['searched_val_accuracy']:.2f}%",
                      f"{100 * r['val_accuracy']:.2f}%" + (f" ± {100 * statistics.stdev(r['val_accuracies']):.2f}"
                                                           if seeds > 1 else ""))
    console.print(table)


def print_final(rows: list[dict]) -> None:
    from rich.table import Table

    seeds = len(rows[0]["test_accuracies"])
    table = Table("source", "trial", "what", "params", "val (search)", f"test mean ± sd ({seeds} seeds)",
                  title="final: retrained at full budget on train+val (test read only here)", title_justify="left")
    for r in rows:
        table.add_row(r["source"], str(r["trial"]), r["label"], f"{r['params']:,}", f"{100 * r['val_accuracy']:.1f}%",
                      f"{100 * r['test_mean']:.2f}% ± {100 * r['test_sd']:.2f}")
    console.print(table)
