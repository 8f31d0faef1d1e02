"""The final table: genomes chosen on validation, retrained at full budget on train+val with several seeds; test
accuracy mean and sd.

Test accuracy is read here only, after every choice was made on validation. The chosen genomes answer the
findings' questions: the most accurate searched trial; the smallest searched trials within 1 and within 2 points
of the best dense network; optionally more Pareto trials spread by size; the best dense trial and the smallest
dense one within 1 point of it (a tuned dense front is often far smaller than its best point); and any
warm-start zoo models named in ``also``. Each trains with the hyperparameters its trial drew, for the study's
full budget (the dense trial for the epochs it drew), on all the training data: a study's ``train_samples`` is
for the search only.
"""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial

from evaluators.datasets import Splits, load_dataset
from evaluators.specs import DataSpec, parse_dataset_spec
from evaluators.training import train
from nas.errors import ConfigError
from nas.study.config import StudyConfig, parse_config
from nas.study.records import TrialRecord, read_study, write_study
from nas.study.storage import load_with_baseline, stored_config
from nas.study.summary import pareto_trials
from search_space import Genome


@dataclass(frozen=True)
class FinalRow:
    """One chosen genome and its test accuracy per seed after the final retrain."""

    source: str  # search | dense | zoo
    trial: int
    label: str  # zoo name, else the genome's family
    summary: str
    params: int
    val_accuracy: float  # what the search recorded (the reason it was chosen)
    test_accuracies: tuple[float, ...]

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.test_accuracies)

    @property
    def test_sd(self) -> float:
        return statistics.stdev(self.test_accuracies) if len(self.test_accuracies) > 1 else 0.0


def thin_front(front: Sequence[FrozenTrial], count: int) -> list[FrozenTrial]:
    """At most ``count`` trials of a front sorted by size, evenly spread over it, first and last always kept."""
    if len(front) <= count:
        return list(front)
    if count < 2:
        return list(front[-1:])  # sorted by size, so the last is the most accurate
    picks = sorted({round(i * (len(front) - 1) / (count - 1)) for i in range(count)})
    return [front[i] for i in picks]


def smallest_within(trials: Sequence[FrozenTrial], accuracy: float, points: float) -> FrozenTrial | None:
    """The trial with the fewest parameters whose validation accuracy is at most ``points`` below ``accuracy``."""
    near = [t for t in trials if TrialRecord.of(t).val_accuracy >= accuracy - points / 100]
    return min(near, key=lambda t: (TrialRecord.of(t).params, -TrialRecord.of(t).val_accuracy)) if near else None


def chosen_trials(study: optuna.Study, baseline: optuna.Study | None, count: int,
                  also: Sequence[str] = (), numbers: Sequence[int] = ()) -> list[tuple[str, FrozenTrial]]:
    """(source, trial) pairs to retrain, chosen on validation: the most accurate searched trial, the smallest
    searched ones within 1 and 2 points of the best dense, ``count`` more spread along the front; the best dense
    trial and the smallest dense one within 1 point of it; the named zoo models. ``numbers`` (trials chosen by
    the caller, on validation) replace the searched picks."""
    front = pareto_trials(study)
    if not front:
        raise ConfigError(f"study {study.study_name!r} has no trial trained at full budget; nothing to retrain")
    dense_trials = [t for t in baseline.get_trials(deepcopy=False) if TrialRecord.of(t).full_budget] \
        if baseline is not None else []
    best_dense = max(dense_trials, key=lambda t: (TrialRecord.of(t).val_accuracy, -t.number), default=None)
    most_accurate = max(front, key=lambda t: (TrialRecord.of(t).val_accuracy, -TrialRecord.of(t).params, -t.number))
    picks = [most_accurate, *thin_front(front, count)] if count else [most_accurate]
    if numbers:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        missing = [n for n in numbers if n not in by_number or not TrialRecord.of(by_number[n]).full_budget]
        if missing:
            raise ConfigError(f"--trials: trial {missing[0]} of study {study.study_name!r} is not trained at full "
                              "budget (or does not exist)")
        picks = [by_number[n] for n in numbers]
    elif best_dense is not None:
        target = TrialRecord.of(best_dense).val_accuracy
        picks += [t for t in (smallest_within(front, target, 1), smallest_within(front, target, 2)) if t is not None]
    chosen: list[tuple[str, FrozenTrial]] = []
    for trial in sorted({t.number: t for t in picks}.values(), key=lambda t: TrialRecord.of(t).params):
        chosen.append(("search", trial))
    if best_dense is not None:
        near = smallest_within(pareto_trials(baseline), TrialRecord.of(best_dense).val_accuracy, 1)
        for trial in {t.number: t for t in (near, best_dense) if t is not None}.values():
            chosen.append(("dense", trial))
    for trial in zoo_trials(study, also):
        if trial.number not in {t.number for source, t in chosen if source == "search"}:  # dense: another study
            chosen.append(("zoo", trial))
    return chosen


def zoo_trials(study: optuna.Study, also: Sequence[str]) -> list[FrozenTrial]:
    """The warm-start trial of each zoo model named in ``also``; a ConfigError naming the first the study lacks
    (``nas findings`` asks before a recheck, so a typo does not wait for an hour of retraining)."""
    by_zoo = {TrialRecord.of(t).zoo: t for t in study.get_trials(deepcopy=False) if TrialRecord.of(t).zoo}
    for name in also:
        if name not in by_zoo:
            raise ConfigError(f"--also {name}: the study has no warm-start trial of zoo model {name!r}; its zoo "
                              f"trials are {', '.join(sorted(by_zoo)) or 'none'}")
    return [by_zoo[name] for name in also]


def train_plus_val(data: Splits) -> Splits:
    """The splits with validation folded into training (already normalized with the training split's statistics)."""
    return dataclasses.replace(data, x_train=torch.cat([data.x_train, data.x_val]),
                               y_train=torch.cat([data.y_train, data.y_val]))


def full_data_spec(config: StudyConfig) -> DataSpec:
    """The study's dataset without ``train_samples``: the final retrain sees every training image."""
    spec = parse_dataset_spec(config.dataset).to_dict()
    spec.pop("train_samples", None)
    return parse_dataset_spec(spec)


def retrain(trial: FrozenTrial, config: StudyConfig, data: Splits, seeds: Sequence[int],
            threads: int | None = None, say: Callable[[str], None] = print, split: str = "test") -> tuple[float, ...]:
    """Accuracy on ``split`` (test, or val for a recheck) of ``trial``'s genome after training with its drawn
    hyperparameters, once per seed."""
    record = TrialRecord.of(trial)
    genome = Genome.from_json(record.genome, f"trial {trial.number} genome").validate()
    epochs = int(trial.params.get("epochs", config.max_epochs))  # the dense baseline draws its epochs
    drawn = config.training.train_config(optuna.trial.FixedTrial(trial.params, trial.number), epochs, threads)
    accuracies = []
    for seed in seeds:
        result = train(genome, data, dataclasses.replace(drawn, seed=seed), evaluate_test=split == "test")
        if result.stopped is not None:
            raise ConfigError(f"retrain of trial {trial.number} (seed {seed}) stopped early: {result.reason}")
        accuracies.append(float(result.test_accuracy if split == "test" else result.val_accuracy))
        say(f"trial {trial.number} seed {seed}: {split} {100 * accuracies[-1]:.2f}% "
            f"({epochs} epochs, {result.train_time_s:.0f}s)")
    return tuple(accuracies)


def final_table(name: str, url: str, *, seeds: Sequence[int] = (0, 1, 2), count: int = 0, also: Sequence[str] = (),
                numbers: Sequence[int] = (), threads: int | None = None,
                say: Callable[[str], None] = print) -> list[FinalRow]:
    """Retrains the chosen genomes of study ``name`` and stores the table in the study (``final``)."""
    study, baseline = load_with_baseline(name, url)
    config = stored_config(study, url)
    chosen = chosen_trials(study, baseline, count, also, numbers)
    data = train_plus_val(load_dataset(full_data_spec(config)))
    say(f"retraining {len(chosen)} genomes x {len(seeds)} seeds on {len(data.x_train):,} train+val samples")
    rows = []
    for source, trial in chosen:
        record = TrialRecord.of(trial)
        trained_as = config if source != "dense" else parse_config(read_study(baseline, "config"), "baseline config")
        rows.append(FinalRow(source, trial.number, record.zoo or record.family, record.summary, int(record.params),
                             float(record.val_accuracy), retrain(trial, trained_as, data, seeds, threads, say)))
    write_study(study, final={"seeds": list(seeds), "train_samples": len(data.x_train),
                              "rows": [dataclasses.asdict(r) for r in rows]})
    return rows


def stored_final(study: optuna.Study) -> list[FinalRow]:
    """The table the last ``final_table`` stored in the study (empty when it never ran)."""
    stored = read_study(study, "final") or {}
    return [FinalRow(**{**row, "test_accuracies": tuple(row["test_accuracies"])}) for row in stored.get("rows", [])]
