"""A study's trials as this process last saw them, kept current by reading only what changed.

A finished trial never changes again (Optuna refuses writes to it), so each is read and indexed once: the budget
count, the warm-start models used, the twin holders, the rung points and the Pareto set are kept up to date as
trials finish, and only running and new trials are read again. So a budget check, a twin claim or a rung decision
costs the same at 10,000 trials as at 100 (benchmarks/RESULTS.md "Scale"), where a full ``get_trials`` and a
record per trial grew with the study.

On an SQL storage a refresh reads no trial whole: the changed trials' states, then their ``INDEXED_ATTRS`` and
rungs, and the finished ones' objective values (three small queries). Not their parameters or curves: every worker
reads every trial, and with many workers whole reads were most of the machinery's time. Trials are read whole only
when handed out: the front's members, and a twin's holder.

:func:`ledger` gives the one ledger of a study object; every read goes through :meth:`Ledger.refresh` first.
"""
from __future__ import annotations

import itertools
import weakref
from typing import Callable, Hashable, Iterable, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.scheduling.pareto import oriented, pareto_set
from nas.study.records import RUNG_PREFIX, TrialRecord
from nas.study.changed_reads import (changed_states, changed_trials, read_trial, read_trials, read_user_attrs,
                                     read_values)
from nas.study.storage import storage_trial_id

HOLDS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # states that hold a twin key / a rung point
# what the ledger reads of a trial (with the ``rung_<E>`` attributes): all its indexes need
INDEXED_ATTRS = ("twin_key", "zoo", "infeasible", "killed", "duplicate_of", "val_accuracy", "params", "flops",
                 "latency_ms", "epoch_s", "epoch_on")


class Seen(NamedTuple):
    """A trial as the ledger reads it: storage id, record (``INDEXED_ATTRS`` and rungs), objective values."""

    trial_id: int
    record: TrialRecord
    values: tuple[float, ...] | None


def seen_whole(trial: FrozenTrial) -> Seen:
    """A trial read whole, as the ledger keeps it (storages without SQL)."""
    return Seen(storage_trial_id(trial), TrialRecord.of(trial), tuple(trial.values) if trial.values else None)


def counts_in_budget(record: TrialRecord) -> bool:
    """Finished or running, but not killed with its worker (a killed trial is run again)."""
    return record.state in HOLDS or record.state == TrialState.FAIL and not record.killed


def shown_count_key(record: TrialRecord) -> str:
    """The progress/status bucket of a trial: complete, pruned, failed, infeasible or running."""
    state = record.shown_state
    return {"fail": "failed", "waiting": "running"}.get(state, state)


def non_dominated(trials: list[Seen], point: Callable[[Seen], tuple]) -> list[Seen]:
    """The trials whose ``point`` (maximized) no other's dominates, by increasing parameter count."""
    keep = set(pareto_set({s.record.number: point(s) for s in trials}))
    return sorted((s for s in trials if s.record.number in keep), key=lambda s: (s.record.params or 0, s.record.number))


class Ledger:
    """Incremental indexes over one study's trials (see the module docstring)."""

    def __init__(self, study: optuna.Study):
        self.study_ref = weakref.ref(study)  # not the study itself: the ledger registry must let it be collected
        self.directions = [d.name.lower() for d in study.directions]
        self.last_finished_id = -1
        self.unfinished: dict[int, TrialRecord] = {}  # by storage trial id
        self.finished_count = 0
        self.finished_in_budget = 0
        self.finished_counts: dict[str, int] = {}
        self.zoo_used: set[str] = set()
        self.holders: dict[str, tuple[int, int]] = {}  # twin key -> (number, storage id) of its first finished holder
        self.rung_values: dict[int, dict[int, tuple[float, dict]]] = {}  # epoch -> number -> (accuracy, metrics)
        self.front_seen: list[Seen] = []  # trained trials, non-dominated in the study's objectives
        # trained trials, non-dominated in (val accuracy up, params down): the hypervolume's points. The same as
        # ``front`` for the default objectives; a single-objective study's front is its best trial alone
        self.size_front_seen: list[Seen] = []
        self.whole: dict[int, FrozenTrial] = {}  # storage id -> the front members read whole
        self.points: dict[tuple, dict[int, tuple]] = {}  # (epoch, key) -> number -> rung point (see rung_points)
        self.first_epoch: dict[int, tuple[str, float]] = {}  # number -> (device and threads, first epoch's seconds)

    def refresh(self) -> "Ledger":
        """Reads the trials created or finished since the last refresh; indexes the finished ones."""
        study = self.study_ref()
        states = changed_states(study, self.last_finished_id, set(self.unfinished))
        if states is None:  # no SQL: whole trials, filtered in memory
            changed = [seen_whole(t) for t in changed_trials(study, self.last_finished_id, set(self.unfinished))]
        else:
            ids = [trial_id for trial_id, _, _ in states]
            attrs = read_user_attrs(study, ids, INDEXED_ATTRS, RUNG_PREFIX)
            values = read_values(study, [trial_id for trial_id, _, state in states if state == TrialState.COMPLETE])
            changed = [Seen(trial_id, TrialRecord.from_attrs(number, state, attrs[trial_id]), values.get(trial_id))
                       for trial_id, number, state in states]
        arrived = [s for s in changed if s.record.state.is_finished()]
        self._index(arrived)  # first: if it raised, the next refresh would read these trials again
        for seen in arrived:
            self.unfinished.pop(seen.trial_id, None)
            self.last_finished_id = max(self.last_finished_id, seen.trial_id)
        self.unfinished.update({s.trial_id: s.record for s in changed if not s.record.state.is_finished()})
        return self

    def _index(self, trials: Iterable[Seen]) -> None:
        trained = []
        for seen in sorted(trials, key=lambda s: s.record.number):
            record = seen.record
            self.finished_count += 1
            self.finished_in_budget += counts_in_budget(record)
            key = shown_count_key(record)
            self.finished_counts[key] = self.finished_counts.get(key, 0) + 1
            if record.zoo:
                self.zoo_used.add(record.zoo)
            if record.epoch_s is not None:
                self.first_epoch[record.number] = (record.epoch_on, record.epoch_s)
            if record.state in HOLDS:
                if record.twin_key and (record.twin_key not in self.holders
                                        or self.holders[record.twin_key][0] > record.number):
                    self.holders[record.twin_key] = (record.number, seen.trial_id)
                for epoch, accuracy in record.rungs.items():
                    self.rung_values.setdefault(epoch, {})[record.number] = (accuracy, record.metrics())
            if record.trained:
                trained.append(seen)
        if trained:
            self.front_seen = non_dominated(self.front_seen + trained, lambda s: oriented(s.values, self.directions))
            self.size_front_seen = non_dominated(self.size_front_seen + trained,
                                                 lambda s: (s.record.val_accuracy, -float(s.record.params or 0)))
            members = {s.trial_id for s in self.front_seen + self.size_front_seen}
            self.whole = {trial_id: t for trial_id, t in self.whole.items() if trial_id in members}

    def _read_whole(self, seen: list[Seen]) -> list[FrozenTrial]:
        """These finished trials whole, each read once while it stays on a front."""
        missing = [s.trial_id for s in seen if s.trial_id not in self.whole]
        for trial in read_trials(self.study_ref(), missing):
            self.whole[storage_trial_id(trial)] = trial
        return [self.whole[s.trial_id] for s in seen]

    @property
    def front(self) -> list[FrozenTrial]:
        """The trained trials non-dominated in the study's objectives, whole, by increasing parameter count."""
        return self._read_whole(self.front_seen)

    @property
    def size_front(self) -> list[FrozenTrial]:
        """The trained trials non-dominated in (val accuracy, params), whole: the hypervolume's points."""
        return self._read_whole(self.size_front_seen)

    def shown_front(self) -> list[FrozenTrial]:
        """The front that tables, plots and exports use: the study's own; for a single objective, whose own front
        is its best trial alone, accuracy against parameters (the trade-off every report shows)."""
        return list(self.front if len(self.directions) > 1 else self.size_front)

    def in_budget(self) -> int:
        """Trials that use up the budget: finished ones (not those killed with their worker) and running ones."""
        return self.finished_in_budget + sum(counts_in_budget(r) for r in self.unfinished.values())

    def size(self) -> int:
        return self.finished_count + len(self.unfinished)

    def state_counts(self) -> dict[str, int]:
        """Trials by the state the user reads: complete, pruned, failed, infeasible, running."""
        counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
        for key, count in self.finished_counts.items():
            counts[key] = counts.get(key, 0) + count
        for record in self.unfinished.values():
            key = shown_count_key(record)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def first_epochs(self, exclude: int, setup: str) -> list[float]:
        """The first epoch's seconds of every trial that trained one on ``setup`` (device and threads), finished or
        running, but trial ``exclude``: a study resumed on another device or worker count compares like with like."""
        running = {r.number: (r.epoch_on, r.epoch_s) for r in self.unfinished.values() if r.epoch_s is not None}
        return [s for number, (on, s) in {**self.first_epoch, **running}.items() if on == setup and number != exclude]

    def zoo_names(self) -> set[str]:
        """The warm-start models some trial has taken."""
        return self.zoo_used | {r.zoo for r in self.unfinished.values() if r.zoo}

    def holder(self, key: str, exclude: int) -> FrozenTrial | None:
        """The trial with the smallest number that trained, was pruned training, or now trains ``key``, read whole
        (a twin copies a finished one's results; a running one's heartbeat and worker tell whether it lives)."""
        candidates = [(r.number, trial_id) for trial_id, r in self.unfinished.items()
                      if r.state in HOLDS and r.twin_key == key and r.number != exclude]
        finished = self.holders.get(key)
        if finished is not None and finished[0] != exclude:
            candidates.append(finished)
        return read_trial(self.study_ref(), min(candidates)[1]) if candidates else None

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
        for record in self.unfinished.values():
            if record.state in HOLDS and epoch in record.rungs:
                points[record.number] = to_point(record.rungs[epoch], record.metrics())
        points.pop(exclude, None)
        return points


_LEDGERS: "weakref.WeakKeyDictionary[optuna.Study, Ledger]" = weakref.WeakKeyDictionary()


def ledger(study: optuna.Study) -> Ledger:
    """The ledger of ``study`` (one per study object), refreshed."""
    if study not in _LEDGERS:
        _LEDGERS[study] = Ledger(study)
    return _LEDGERS[study].refresh()
