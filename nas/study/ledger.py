"""A study's trials as this process last saw them, kept current by reading only what changed.

A finished trial never changes again (Optuna refuses writes to it), so each is read and indexed once: the budget
count, the warm-start models used, the twin holders, the rung points and the Pareto set are kept up to date as
trials finish, and only running and new trials are read again. So a budget check, a twin claim or a rung decision
costs the same at 10,000 trials as at 100 (benchmarks/RESULTS.md "Scale"), where a full ``get_trials`` and a
record per trial grew with the study.

:func:`ledger` gives the one ledger of a study object; every read goes through :meth:`Ledger.refresh` first.
"""
from __future__ import annotations

import itertools
import weakref
from typing import Callable, Hashable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.scheduling.pareto import oriented, pareto_set
from nas.study.records import TrialRecord
from nas.study.storage import changed_trials, storage_trial_id

HOLDS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # states that hold a twin key / a rung point


def counts_in_budget(record: TrialRecord) -> bool:
    """Finished or running, but not killed with its worker (a killed trial is run again)."""
    return record.state in HOLDS or record.state == TrialState.FAIL and not record.killed


def shown_count_key(record: TrialRecord) -> str:
    """The progress/status bucket of a trial: complete, pruned, failed, infeasible or running."""
    state = record.shown_state
    return {"fail": "failed", "waiting": "running"}.get(state, state)


def size_point(trial: FrozenTrial) -> tuple[float, float]:
    """A trained trial as (val accuracy, -params): both maximized."""
    record = TrialRecord.of(trial)
    return (record.val_accuracy, -float(record.params or 0))


def non_dominated(trials: list[FrozenTrial], point: Callable[[FrozenTrial], tuple]) -> list[FrozenTrial]:
    """The trials whose ``point`` (maximized) no other's dominates, by increasing parameter count."""
    keep = set(pareto_set({t.number: point(t) for t in trials}))
    return sorted((t for t in trials if t.number in keep), key=lambda t: (TrialRecord.of(t).params or 0, t.number))


class Ledger:
    """Incremental indexes over one study's trials (see the module docstring)."""

    def __init__(self, study: optuna.Study):
        self.study_ref = weakref.ref(study)  # not the study itself: the ledger registry must let it be collected
        self.directions = [d.name.lower() for d in study.directions]
        self.last_finished_id = -1
        self.unfinished: dict[int, tuple[FrozenTrial, TrialRecord]] = {}  # by storage trial id
        self.finished_count = 0
        self.finished_in_budget = 0
        self.finished_counts: dict[str, int] = {}
        self.zoo_used: set[str] = set()
        self.holders: dict[str, FrozenTrial] = {}  # twin key -> the finished holder with the smallest number
        self.rung_values: dict[int, dict[int, tuple[float, dict]]] = {}  # epoch -> number -> (accuracy, metrics)
        self.front: list[FrozenTrial] = []  # trained trials, non-dominated in the study's objectives
        # trained trials, non-dominated in (val accuracy up, params down): the hypervolume's points. The same as
        # ``front`` for the default objectives; a single-objective study's front is its best trial alone
        self.size_front: list[FrozenTrial] = []
        self.points: dict[tuple, dict[int, tuple]] = {}  # (epoch, key) -> number -> rung point (see rung_points)

    def refresh(self) -> "Ledger":
        """Reads the trials created or finished since the last refresh; indexes the finished ones."""
        changed = changed_trials(self.study_ref(), self.last_finished_id, set(self.unfinished))
        arrived = [t for t in changed if t.state.is_finished()]
        self._index(arrived)  # first: if it raised, the next refresh would read these trials again
        for trial in arrived:
            self.unfinished.pop(storage_trial_id(trial), None)
            self.last_finished_id = max(self.last_finished_id, storage_trial_id(trial))
        for trial in changed:
            if not trial.state.is_finished():
                self.unfinished[storage_trial_id(trial)] = (trial, TrialRecord.of(trial))
        return self

    def _index(self, trials: Iterable[FrozenTrial]) -> None:
        trained = []
        for trial in sorted(trials, key=lambda t: t.number):
            record = TrialRecord.of(trial)
            self.finished_count += 1
            self.finished_in_budget += counts_in_budget(record)
            key = shown_count_key(record)
            self.finished_counts[key] = self.finished_counts.get(key, 0) + 1
            if record.zoo:
                self.zoo_used.add(record.zoo)
            if record.state in HOLDS:
                if record.twin_key and (record.twin_key not in self.holders
                                        or self.holders[record.twin_key].number > trial.number):
                    self.holders[record.twin_key] = trial
                for epoch, accuracy in record.rungs.items():
                    self.rung_values.setdefault(epoch, {})[trial.number] = (accuracy, record.metrics())
            if record.trained:
                trained.append(trial)
        if trained:
            self.front = non_dominated(self.front + trained, lambda t: oriented(t.values, self.directions))
            self.size_front = non_dominated(self.size_front + trained, size_point)

    def shown_front(self) -> list[FrozenTrial]:
        """The front that tables, plots and exports use: the study's own; for a single objective, whose own front
        is its best trial alone, accuracy against parameters (the trade-off every report shows)."""
        return list(self.front if len(self.directions) > 1 else self.size_front)

    def running(self) -> list[tuple[FrozenTrial, TrialRecord]]:
        """The unfinished trials as last read, by number."""
        return sorted(self.unfinished.values(), key=lambda pair: pair[0].number)

    def in_budget(self) -> int:
        """Trials that use up the budget: finished ones (not those killed with their worker) and running ones."""
        return self.finished_in_budget + sum(counts_in_budget(r) for _, r in self.unfinished.values())

    def size(self) -> int:
        return self.finished_count + len(self.unfinished)

    def state_counts(self) -> dict[str, int]:
        """Trials by the state the user reads: complete, pruned, failed, infeasible, running."""
        counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
        for key, count in self.finished_counts.items():
            counts[key] = counts.get(key, 0) + count
        for _, record in self.unfinished.values():
            key = shown_count_key(record)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def zoo_names(self) -> set[str]:
        """The warm-start models some trial has taken."""
        return self.zoo_used | {r.zoo for _, r in self.unfinished.values() if r.zoo}

    def holder(self, key: str, exclude: int) -> FrozenTrial | None:
        """The trial with the smallest number that trained, was pruned training, or now trains ``key``."""
        candidates = [t for t, r in self.unfinished.values()
                      if r.state in HOLDS and r.twin_key == key and t.number != exclude]
        finished = self.holders.get(key)
        if finished is not None and finished.number != exclude:
            candidates.append(finished)
        return min(candidates, key=lambda t: t.number) if candidates else None

    def rung_points(self, epoch: int, exclude: int, key: Hashable,
                    to_point: Callable[[float, dict], tuple]) -> dict[int, tuple]:
        """``to_point(accuracy at rung epoch, objective metrics)`` of every trial that reached the rung, but trial
        ``exclude``. A finished trial's point is computed once per ``key`` (which names ``to_point``): a finished
        trial enters ``rung_values`` once, at its end, so the cache only ever grows at the end."""
        finished = self.rung_values.get(epoch, {})
        cache = self.points.setdefault((epoch, key), {})
        for number, (accuracy, metrics) in itertools.islice(finished.items(), len(cache), None):
            cache[number] = to_point(accuracy, metrics)
        points = dict(cache)
        for trial, record in self.unfinished.values():
            if record.state in HOLDS and epoch in record.rungs:
                points[trial.number] = to_point(record.rungs[epoch], record.metrics())
        points.pop(exclude, None)
        return points


_LEDGERS: "weakref.WeakKeyDictionary[optuna.Study, Ledger]" = weakref.WeakKeyDictionary()


def ledger(study: optuna.Study) -> Ledger:
    """The ledger of ``study`` (one per study object), refreshed."""
    if study not in _LEDGERS:
        _LEDGERS[study] = Ledger(study)
    return _LEDGERS[study].refresh()
