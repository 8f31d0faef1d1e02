"""Optuna's per-process trial cache without re-reading every running trial whole at each look.

Optuna's cache (``optuna.storages._CachedStorage``) syncs before each sampler read by reading, whole (parameters,
attributes, curves), every trial not finished at its last look and every newer one: with 32 workers each
``ask`` read ~31 running trials whole, about half of the workers' CPU (benchmarks/RESULTS.md "Scale"). This cache
first reads the states of those trials (one query on the trials table) and reads whole only the trials it has
not seen and those whose state changed. A running trial's cached copy is therefore as of its start, or its last
change of state: the samplers read finished trials (TPE without ``constant_liar``, NSGA-II), and what reads
running trials' attributes in a worker (the ledger, the stale-trial sweep) reads the storage itself.
"""
from __future__ import annotations

import optuna
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import TrialState

from nas.study.trial_writes import committed_statements

NO_ID_ABOVE = 2**31 - 1  # Optuna reads "these ids, or any above a bound": a bound no id reaches keeps it to these


class StateSyncedCache(_CachedStorage):
    """Optuna's trial cache over an RDB storage, synced by state (see the module docstring)."""

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            changed = [trial_id for trial_id, state in self._states(study_id, study)
                       if self._cached_state(study, trial_id) != state]
            if not changed:
                return
            trials = self._backend._get_trials(study_id, states=None, included_trial_ids=set(changed),  # noqa: SLF001
                                               trial_id_greater_than=NO_ID_ABOVE)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:  # the bookkeeping of Optuna's own sync
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)

    def _states(self, study_id: int, study: _StudyInfo) -> list[tuple[int, TrialState]]:
        """(storage id, state) of the trials Optuna's sync would read: newer than the last finished one it saw, or
        unfinished at its last look."""
        import sqlalchemy

        query = "SELECT trial_id, state FROM trials WHERE study_id = :study AND (trial_id > :after"
        unfinished = sorted(study.unfinished_trial_ids)
        statement = sqlalchemy.text(query + (" OR trial_id IN :ids)" if unfinished else ")"))
        params = {"study": study_id, "after": study.last_finished_trial_id}
        if unfinished:
            statement = statement.bindparams(sqlalchemy.bindparam("ids", expanding=True))
            params["ids"] = unfinished
        with committed_statements(self._backend.engine) as connection:
            return [(int(trial_id), TrialState[state]) for trial_id, state in connection.execute(statement, params)]

    def _cached_state(self, study: _StudyInfo, trial_id: int) -> TrialState | None:
        located = self._trial_id_to_study_id_and_number.get(trial_id)
        trial = study.trials.get(located[1]) if located is not None else None
        return trial.state if trial is not None else None


def state_synced(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` (an RDB storage, as ``nas.study.storage.open_storage`` opens) behind a :class:`StateSyncedCache`;
    any other storage as it is."""
    return StateSyncedCache(storage) if isinstance(storage, optuna.storages.RDBStorage) else storage
