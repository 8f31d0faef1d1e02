"""The machinery's steady cost per trial at a given study size, with the start-up left out entirely.

Usage: ``python benchmarks/steady_trial.py --base DIR [--grow 10000] [--add 220]``

``--grow N`` first fills ``DIR/study.db`` with the scale benchmark's study (``benchmarks/scale.py``: simulated
trials, NSGA-II, rungs at 2 and 6 of 18 epochs) to N trials with one `nas run` worker, if it holds fewer. Then a
copy of that storage is grown by ``--add`` trials by one worker in this process, and the wall time between
consecutive trials is averaged after the first 20 (the first ``ask`` reads the whole study into Optuna's cache).
The copy keeps every run on the same study, so two versions of the code compare side by side: run the command
once per checkout (``PYTHONPATH=CHECKOUT``, from outside the checkouts).
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nas  # noqa: E402
from nas.execution.local import worker_loop  # noqa: E402
from nas.study.config import parse_config  # noqa: E402
from nas.study.plan import RunPlan  # noqa: E402
from scale import STUDY, grow  # noqa: E402

WARM_UP = 20  # trials left out at the start


def stored_trials(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]


def steady_ms(base: Path, add: int) -> tuple[int, float, float]:
    """(study size, mean ms between trials, median) over trials WARM_UP+1..add of a copy of ``base``."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("study.db", "study.db-wal", "study.db-shm"):
            if (base / name).exists():
                shutil.copy(base / name, Path(tmp) / name)
        url = f"sqlite:///{tmp}/study.db"
        stored = stored_trials(Path(tmp) / "study.db")
        config = parse_config({**STUDY, "name": "scale", "storage": url, "budget": {"trials": stored + add}})
        stamps: list[float] = []
        worker_loop(RunPlan(config, url), 0, 1, None, stored, on_trial=lambda *_: stamps.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(stamps[WARM_UP:], stamps[WARM_UP + 1:])]
    return stored, 1e3 * statistics.fmean(gaps), 1e3 * statistics.median(gaps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of the grown study (study.db)")
    parser.add_argument("--grow", type=int, default=0, help="fill the base study to this many trials first")
    parser.add_argument("--add", type=int, default=220, help=f"trials added to the copy ({WARM_UP} left out)")
    args = parser.parse_args(argv)
    if args.add <= WARM_UP + 1:
        parser.error(f"--add must be above {WARM_UP + 1}")
    args.base.mkdir(parents=True, exist_ok=True)
    if stored_trials(args.base / "study.db") < args.grow:
        grow(args.base, f"sqlite:///{args.base}/study.db", "scale", 1, args.grow)
    size, mean, median = steady_ms(args.base, args.add)
    print(f"code {Path(nas.__file__).parents[1]}: at {size:,} trials {mean:.1f} ms per trial (median {median:.1f}; "
          f"{args.add - WARM_UP - 1} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
