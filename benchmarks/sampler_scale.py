"""What the sampler alone costs per trial as a study grows: issue 15's 10,000 trials with the default sampler.

Usage: ``python benchmarks/sampler_scale.py [--sizes 100 1000 10000] [--asks 5] [--write-results]``

For each sampler as ``nas run`` builds it (``make_sampler``: TPE, the default; multivariate TPE; NSGA-II) an
in-memory Optuna study is filled with N finished trials of the scale benchmark's space (the quickstart's
perm-cnn-1d preset at 40 features; parameters drawn at random, two thirds PRUNED as the rung rule leaves them,
random accuracy and size), then times ``--asks`` more trials: ``ask``, the genome drawn define-by-run through
the sampler, ``tell``. Nothing is stored or trained, so the figure is the sampler's own work (and Optuna's
in-memory bookkeeping), the part of a trial's machinery that no storage or rung rule of ours can remove.
"""
from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _results import sizes_table, write_section  # noqa: E402
from scale import STUDY  # noqa: E402
from nas.search.genomes import sample_genome  # noqa: E402
from nas.search.presets import resolve_space  # noqa: E402
from nas.search.samplers import make_sampler  # noqa: E402
from nas.study.config import parse_config  # noqa: E402

SECTION = "## The sampler's own cost at 10,000 trials"
SAMPLERS = {"tpe (default)": {"name": "tpe", "seed": 0}, "tpe multivariate": {"name": "tpe", "seed": 0,
                                                                              "multivariate": True},
            "nsga2": {"name": "nsga2", "seed": 0}}
INPUT, CLASSES = (40,), 10


def filled_study(size: int, space: dict, seed: int = 0) -> optuna.Study:
    """An in-memory study holding ``size`` finished random draws of ``space``: a third COMPLETE, the rest PRUNED."""
    rng = random.Random(seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed))
    for _ in range(size):
        trial = study.ask()
        sample_genome(trial, space, INPUT, CLASSES)
        if rng.random() < 1 / 3:
            study.tell(trial, [rng.random(), float(rng.randint(100, 20000))])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study


def ms_per_ask(study: optuna.Study, sampler: optuna.samplers.BaseSampler, space: dict, asks: int) -> float:
    """Median milliseconds of ask + define-by-run draw + tell with ``sampler`` on ``study``."""
    study.sampler = sampler
    rng, times = random.Random(1), []
    for _ in range(asks):
        started = time.perf_counter()
        trial = study.ask()
        sample_genome(trial, space, INPUT, CLASSES)
        study.tell(trial, [rng.random(), float(rng.randint(100, 20000))])
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--asks", type=int, default=5)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    space = resolve_space(STUDY["search_space"])
    rows = {name: [] for name in SAMPLERS}
    for size in args.sizes:
        for name, sampler in SAMPLERS.items():
            config = parse_config({**STUDY, "name": "sampler-scale", "sampler": sampler,
                                   "budget": {"trials": max(args.sizes)}})
            study = filled_study(size, space)  # seeded: every sampler sees the same trials, not another's asks
            rows[name].append(ms_per_ask(study, make_sampler(config), space, args.asks))
            print(f"{name} at {size}: {rows[name][-1]:.1f} ms", file=sys.stderr, flush=True)
    command = "python benchmarks/sampler_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([SECTION, "", f"Command: `{command}`", "", __doc__.split("\n\n")[2].replace("\n", " "), "",
                      *sizes_table("sampler", rows, args.sizes, digits=1)])
    print(text)
    if args.write_results:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
