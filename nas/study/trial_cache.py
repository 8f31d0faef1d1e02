"""Optuna's per-process trial cache without re-reading every running trial whole at each look.

Optuna's cache (``optuna.storages._CachedStorage``) syncs before each sampler read by reading, whole (parameters,
attributes, curves), every trial not finished at its last look and every newer one: with 32 workers each
``ask`` read ~31 running trials whole, about half of the workers' CPU (benchmarks/RESULTS.md "Scale"). This cache
first reads the states of those trials (one query on the trials table) and reads whole only the trials it has
not seen and those whose state changed. A running trial's cached copy is therefore as of its start, or its last
change of state: the samplers read finished trials (TPE without ``constant_liar``, NSGA-II), and what reads
running trials' attributes in a worker (the ledger, the stale-trial sweep) reads the storage itself.

Each worker still reads each finished trial whole once, so with W workers a trial is read W times; Optuna builds
it through its ORM (2.6 ms a trial in a 32-worker profile, more than half the workers' CPU); this cache builds it
with ``nas.study.changed_reads.read_whole`` (one plain statement over the six tables: one snapshot, so a trial
finished during the read is never read COMPLETE without its values).
"""
from __future__ import annotations

import optuna
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from nas.study.changed_reads import read_whole, trial_states


class StateSyncedCache(_CachedStorage):
    """Optuna's trial cache over an RDB storage, synced by state (see the module docstring)."""

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            # the trials Optuna's sync would read whole: newer than the last finished one seen, or unfinished then
            states = trial_states(self._backend.engine, study_id, study.last_finished_trial_id,
                                  study.unfinished_trial_ids)
            changed = [trial_id for trial_id, _, state in states if self._cached_state(study, trial_id) != state]
            if not changed:
                return
            trials = read_whole(self._backend.engine, changed)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:  # the bookkeeping of Optuna's own sync
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """A finished trial from the cache; any other as stored now, built by ``read_whole`` (Optuna's
        ``ask`` and ``tell`` read the trial they hold three times a trial)."""
        with self._lock:
            cached = self._get_cached_trial(trial_id)
        if cached is not None:
            return cached
        trials = read_whole(self._backend.engine, [trial_id])
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)  # as Optuna's storage says it
        return trials[0]

    def _cached_state(self, study: _StudyInfo, trial_id: int) -> TrialState | None:
        located = self._trial_id_to_study_id_and_number.get(trial_id)
        trial = study.trials.get(located[1]) if located is not None else None
        return trial.state if trial is not None else None


def state_synced(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` (an RDB storage, as ``nas.study.storage.open_storage`` opens) behind a :class:`StateSyncedCache`;
    any other storage as it is."""
    return StateSyncedCache(storage) if isinstance(storage, optuna.storages.RDBStorage) else storage
