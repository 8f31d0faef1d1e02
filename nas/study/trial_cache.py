"""Optuna's per-process trial cache without re-reading every running trial whole at each look.

Optuna's cache (``optuna.storages._CachedStorage``) syncs before each sampler read by reading, whole (parameters,
attributes, curves), every trial not finished at its last look and every newer one: with 32 workers each
``ask`` read ~31 running trials whole, about half of the workers' CPU (benchmarks/RESULTS.md "Scale"). This cache
first reads the states of those trials (one query on the trials table) and reads whole only the trials it has
not seen and those whose state changed. A running trial's cached copy is therefore as of its start, or its last
change of state: the samplers read finished trials (TPE without ``constant_liar``, NSGA-II), and what reads
running trials' attributes in a worker (the ledger, the stale-trial sweep) reads the storage itself.

Each worker still reads each finished trial whole once, so with W workers a trial is read W times; Optuna builds
it through its ORM (2.6 ms a trial in a 32-worker profile, more than half the workers' CPU). :func:`read_whole`
builds the same ``FrozenTrial`` from six plain queries, one per table, and decodes each distinct distribution once.
"""
from __future__ import annotations

import datetime
import functools
import json

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from nas.study.trial_writes import committed_statements

CHUNK = 5000  # trial ids per query: within SQLite's limit of bound parameters


class StateSyncedCache(_CachedStorage):
    """Optuna's trial cache over an RDB storage, synced by state (see the module docstring)."""

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            changed = [trial_id for trial_id, state in self._states(study_id, study)
                       if self._cached_state(study, trial_id) != state]
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
        """A finished trial from the cache; any other as stored now, built by :func:`read_whole` (Optuna's
        ``ask`` and ``tell`` read the trial they hold three times a trial)."""
        with self._lock:
            cached = self._get_cached_trial(trial_id)
        if cached is not None:
            return cached
        trials = read_whole(self._backend.engine, [trial_id])
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)  # as Optuna's storage says it
        return trials[0]

    def _states(self, study_id: int, study: _StudyInfo) -> list[tuple[int, TrialState]]:
        """(storage id, state) of the trials Optuna's sync would read: newer than the last finished one it saw, or
        unfinished at its last look."""
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


def read_whole(engine: sqlalchemy.engine.Engine, trial_ids: list[int]) -> list[FrozenTrial]:
    """The trials with these storage ids, in id order, as Optuna's ``RDBStorage._get_trials`` builds them."""
    trials: list[FrozenTrial] = []
    with committed_statements(engine) as connection:
        for start in range(0, len(trial_ids), CHUNK):
            trials += _read_chunk(connection, sorted(trial_ids)[start:start + CHUNK])
    return trials


def _rows(connection: sqlalchemy.engine.Connection, model: type, columns: tuple[str, ...], ids: list[int],
          order: str) -> dict[int, list]:
    """Trial id -> its rows of ``model``'s table (the ``columns``), ordered by ``order``."""
    table = model.__table__
    statement = sqlalchemy.select(table.c.trial_id, *(table.c[c] for c in columns)) \
        .where(table.c.trial_id.in_(ids)).order_by(table.c[order])
    by_trial: dict[int, list] = {}
    for row in connection.execute(statement):
        by_trial.setdefault(row[0], []).append(row[1:])
    return by_trial


def _read_chunk(connection: sqlalchemy.engine.Connection, ids: list[int]) -> list[FrozenTrial]:
    params = _rows(connection, models.TrialParamModel, ("param_name", "param_value", "distribution_json"), ids,
                   "param_id")
    values = _rows(connection, models.TrialValueModel, ("objective", "value", "value_type"), ids, "trial_value_id")
    user = _rows(connection, models.TrialUserAttributeModel, ("key", "value_json"), ids, "trial_user_attribute_id")
    system = _rows(connection, models.TrialSystemAttributeModel, ("key", "value_json"), ids,
                   "trial_system_attribute_id")
    steps = _rows(connection, models.TrialIntermediateValueModel,
                  ("step", "intermediate_value", "intermediate_value_type"), ids, "trial_intermediate_value_id")
    table = models.TrialModel.__table__
    rows = connection.execute(sqlalchemy.select(table.c.trial_id, table.c.number, table.c.state,
                                                table.c.datetime_start, table.c.datetime_complete)
                              .where(table.c.trial_id.in_(ids)).order_by(table.c.trial_id))
    trials = []
    for trial_id, number, state, started, completed in rows:
        drawn = [(name, value, _distribution(json_text)) for name, value, json_text in params.get(trial_id, [])]
        objectives = sorted(values.get(trial_id, []))
        trials.append(FrozenTrial(
            number=number, state=state, value=None,
            values=[models.TrialValueModel.stored_repr_to_value(v, kind) for _, v, kind in objectives] or None,
            datetime_start=_local(started), datetime_complete=_local(completed),
            params={name: d.to_external_repr(value) for name, value, d in drawn},
            distributions={name: d for name, _, d in drawn},
            user_attrs={key: json.loads(text) for key, text in user.get(trial_id, [])},
            system_attrs={key: json.loads(text) for key, text in system.get(trial_id, [])},
            intermediate_values={step: models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(v, kind)
                                 for step, v, kind in steps.get(trial_id, [])},
            trial_id=trial_id))
    return trials


@functools.lru_cache(maxsize=4096)
def _distribution(json_text: str) -> BaseDistribution:
    """A stored distribution, decoded once per distinct JSON (a study has a few dozen; Optuna decodes each row
    twice)."""
    return json_to_distribution(json_text)


def _local(stored: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC time as the naive local time Optuna's trial model gives."""
    return stored.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None) if stored else None


def state_synced(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` (an RDB storage, as ``nas.study.storage.open_storage`` opens) behind a :class:`StateSyncedCache`;
    any other storage as it is."""
    return StateSyncedCache(storage) if isinstance(storage, optuna.storages.RDBStorage) else storage
