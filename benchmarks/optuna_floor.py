"""What a trial costs in Optuna itself, beside what it costs in ``nas run``: the floor under issue 15's targets.

Usage: ``python benchmarks/optuna_floor.py [--sizes 100 1000] [--write-results]``

Three studies grow side by side in one run, on SQLite, one worker, nothing trained:

- ``optuna``: a plain Optuna study (``study.optimize``) on the scale benchmark's problem, NSGA-II with our
  population, the genome drawn define-by-run from our preset (the same ``suggest_*`` calls as ``nas run``), the
  curve so far written as a user attribute after each of the 18 epochs (a multi-objective trial cannot
  ``report``), and the simulated accuracy and size told at the end;
- ``optuna, final values only``: the same without the per-epoch writes;
- ``nas run --simulate``: ours, as ``benchmarks/scale.py`` measures it (start-up subtracted).

Per trial = wall time of the segment that grew the study to its size, divided by the trials it added.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _results import sizes_table, write_section  # noqa: E402
from scale import STUDY, grow  # noqa: E402

SECTION = "## Optuna's own cost per trial (the floor under Scale)"


def plain_optuna(folder: Path, sizes: list[int], reports: bool) -> list[float]:
    """Per-trial milliseconds of a plain Optuna study grown through ``sizes``."""
    import peer_contenders as pc
    from evaluators.simulated import simulated_accuracy
    from evaluators.training import TrainConfig
    from nas.search.samplers import default_population
    from search_space import GenomeError

    prob = pc.problem(json.dumps({**STUDY, "execution": {"backend": "local"}}))
    epochs = prob.epochs
    url = f"sqlite:///{folder}/optuna-{int(reports)}.db"
    study = optuna.create_study(directions=["maximize", "minimize"], storage=url,
                                sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=default_population(60)))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        try:
            genome = prob.genome(trial)
        except GenomeError:
            return 0.0, 1e9
        config = TrainConfig(lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True), epochs=epochs)
        curve = [simulated_accuracy(genome, config, epoch, prob.data.num_classes) for epoch in range(1, epochs + 1)]
        if reports:
            for epoch in range(1, epochs + 1):  # multi-objective trials cannot report(): the curve as an attribute
                trial.set_user_attr("curve", curve[:epoch])
        return curve[-1], float(genome.params)

    out, done = [], 0
    for size in sizes:
        started = time.perf_counter()
        study.optimize(objective, n_trials=size - done)
        out.append(1e3 * (time.perf_counter() - started) / (size - done))
        done = size
    return out


def ours(folder: Path, sizes: list[int]) -> list[float]:
    """Per-trial milliseconds of ``nas run --simulate`` grown through ``sizes`` (start-up subtracted)."""
    url, name, out, done = f"sqlite:///{folder}/ours.db", "floor-ours", [], 0
    for size in sizes:
        wall = grow(folder, url, name, 1, size)
        fixed = grow(folder, url, name, 1, size)  # nothing left to do: start-up only
        out.append(1e3 * max(0.0, wall - fixed) / (size - done))
        done = size
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="nas-floor-") as tmp:
        folder = Path(tmp)
        rows = {"optuna (NSGA-II, our genome sampler, a write per epoch)": plain_optuna(folder, sizes, True),
                "optuna, final values only": plain_optuna(folder, sizes, False),
                "nas run --simulate": ours(folder, sizes)}
    command = "python benchmarks/optuna_floor.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [SECTION, "", f"Command: `{command}` (SQLite, one worker, nothing trained; the script's docstring says "
             "what each row runs)", "", *sizes_table("study", rows, sizes)]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
