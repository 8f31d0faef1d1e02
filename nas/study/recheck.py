"""The search's ranking checked at the final data size: a study searched on ``train_samples`` ranks its genomes
after training on a fraction of the data, and the most accurate of them there need not be the most accurate on all
of it (a short run favours a high learning rate, for one). The ``count`` most accurate trained trials are retrained
as drawn on the whole training split, validation held out, and ranked again on validation; test is not read.
"""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from evaluators.datasets import load_dataset
from nas.errors import ConfigError
from nas.study.final import full_data_spec, retrain
from nas.study.records import TrialRecord, read_study, write_study
from nas.study.storage import load_study, stored_config


@dataclass(frozen=True)
class RecheckRow:
    """One trial's validation accuracy as the search recorded it and after training on the whole training split
    (``val_accuracy``: the mean over the seeds in ``val_accuracies``)."""

    trial: int
    summary: str
    params: int
    searched_val_accuracy: float
    val_accuracy: float
    val_accuracies: tuple[float, ...]


def most_accurate(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The ``count`` trained trials (full budget, feasible, not a twin's copy) with the highest validation accuracy."""
    trained = [t for t in study.get_trials(deepcopy=False) if TrialRecord.of(t).trained]
    return sorted(trained, key=lambda t: (-TrialRecord.of(t).val_accuracy, t.number))[:count]


def recheck(name: str, url: str, count: int, *, seeds: Sequence[int] = (0,), threads: int | None = None,
            say: Callable[[str], None] = print) -> list[RecheckRow]:
    """Retrains the ``count`` most accurate trials of study ``name`` on all training data, once per seed, and
    stores the ranking by mean validation accuracy in the study (``recheck``), most accurate first. One seed's
    figure is noisy (FINDINGS.md: a one-seed recheck picked by noise): several seeds rank close candidates."""
    if count < 1 or not seeds:
        raise ConfigError(f"--recheck must be at least 1 and --recheck-seeds at least 1, got {count} and {len(seeds)}")
    study = load_study(name, url)
    config = stored_config(study, url)
    chosen = most_accurate(study, count)
    if not chosen:
        raise ConfigError(f"study {name!r} has no trial trained at full budget; nothing to recheck")
    data = load_dataset(full_data_spec(config))
    say(f"rechecking {len(chosen)} trials on {len(data.x_train):,} training samples (validation: "
        f"{len(data.x_val):,}; the search trained on {config.dataset.get('train_samples') or 'all'})")
    rows = []
    for trial in chosen:
        record = TrialRecord.of(trial)
        accuracies = retrain(trial, config, data, seeds, threads, say, split="val")
        rows.append(RecheckRow(trial.number, record.summary, int(record.params), float(record.val_accuracy),
                               statistics.fmean(accuracies), tuple(accuracies)))
    rows.sort(key=lambda r: (-r.val_accuracy, r.params))
    write_study(study, recheck={"seeds": list(seeds), "train_samples": len(data.x_train),
                                "rows": [dataclasses.asdict(r) for r in rows]})
    return rows


def stored_recheck(study: optuna.Study) -> list[RecheckRow]:
    """The ranking the last ``recheck`` stored in the study, most accurate first (empty when it never ran)."""
    return [RecheckRow(**{**row, "val_accuracies": tuple(row["val_accuracies"])})
            for row in (read_study(study, "recheck") or {}).get("rows", [])]
