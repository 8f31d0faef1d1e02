"""What changed in a study since a last look, read from its SQL storage in a few small queries (the ledger's and
the workers' trial cache's reads).

On an RDB storage: the changed trials' states from the trials table alone, then only the attributes and values the
ledger indexes (states first: a trial read finished has all it will ever have); trials are read whole only when
asked for, by :func:`read_whole` (one plain statement, not Optuna's ORM load). Other storages fall back to Optuna's
trial list.
"""
from __future__ import annotations

import datetime
import functools
import json

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from nas.study.storage import storage_trial_id
from nas.study.trial_writes import committed_statements

CHUNK = 5000 // 6  # trial ids per whole read: its six tables each bind them, within SQLite's 32,766


def rdb_backend(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The SQL storage under ``study`` (Optuna wraps it in a trial cache), or None for another kind."""
    storage = study._storage  # noqa: SLF001
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "_get_trials") else None


def changed_trials(study: optuna.Study, after_id: int, unfinished_ids: set[int]) -> list[FrozenTrial]:
    """The study's trials with a storage id above ``after_id`` or in ``unfinished_ids``, whole, filtered in
    memory: what the ledger reads on a storage without SQL (on SQL see :func:`changed_states`)."""
    return [t for t in study.get_trials(deepcopy=False)
            if storage_trial_id(t) > after_id or storage_trial_id(t) in unfinished_ids]


def _sql_rows(engine: sqlalchemy.engine.Engine, query: str, lists: tuple[str, ...] = (), **params) -> list:
    """The rows of ``query``; the parameters named in ``lists`` fill ``IN :name``. One statement, in autocommit on
    PostgreSQL (no BEGIN and ROLLBACK round trips around it)."""
    statement = sqlalchemy.text(query).bindparams(*(sqlalchemy.bindparam(name, expanding=True) for name in lists))
    with committed_statements(engine) as connection:
        return connection.execute(statement, params).all()


def trial_states(engine: sqlalchemy.engine.Engine, study_id: int, after_id: int,
                 unfinished_ids: set[int]) -> list[tuple[int, int, TrialState]]:
    """(storage id, number, state) of the study's trials with a storage id above ``after_id`` or in
    ``unfinished_ids``, from one query on the trials table alone (no parameters, values or attributes)."""
    query = "SELECT trial_id, number, state FROM trials WHERE study_id = :study_id AND (trial_id > :after"
    ids = {"ids": sorted(unfinished_ids)} if unfinished_ids else {}
    rows = _sql_rows(engine, query + (" OR trial_id IN :ids)" if ids else ")"), tuple(ids),
                     study_id=study_id, after=after_id, **ids)
    return [(int(trial_id), int(number), TrialState[state]) for trial_id, number, state in rows]


def changed_states(study: optuna.Study, after_id: int,
                   unfinished_ids: set[int]) -> list[tuple[int, int, TrialState]] | None:
    """:func:`trial_states` of the trials :func:`changed_trials` would read; None on a storage without SQL."""
    backend = rdb_backend(study)
    return None if backend is None else trial_states(backend.engine, study._study_id, after_id,  # noqa: SLF001
                                                     unfinished_ids)


def read_trials(study: optuna.Study, trial_ids: list[int]) -> list[FrozenTrial]:
    """The trials with these storage ids, whole (parameters, values, attributes), in one read."""
    if not trial_ids:
        return []
    backend = rdb_backend(study)
    if backend is None:
        wanted = set(trial_ids)
        return [t for t in study.get_trials(deepcopy=False) if storage_trial_id(t) in wanted]
    return read_whole(backend.engine, trial_ids)


def read_user_attrs(study: optuna.Study, trial_ids: list[int], keys: tuple[str, ...],
                    prefix: str) -> dict[int, dict]:
    """Storage id -> the user attributes named in ``keys`` or starting with ``prefix``, for these trials only: a
    running trial's curve and heartbeat, rewritten every epoch, are not read. An RDB storage only."""
    if not trial_ids:
        return {}
    rows = _sql_rows(rdb_backend(study).engine, "SELECT trial_id, key, value_json FROM trial_user_attributes "
                     "WHERE trial_id IN :ids AND (key IN :keys OR key LIKE :prefix)", ("ids", "keys"),
                     ids=trial_ids, keys=list(keys), prefix=f"{prefix}%")
    attrs: dict[int, dict] = {trial_id: {} for trial_id in trial_ids}
    for trial_id, key, value in rows:
        if key in keys or key.startswith(prefix):  # LIKE's "_" matches any one character
            attrs[int(trial_id)][key] = json.loads(value)
    return attrs


def read_values(study: optuna.Study, trial_ids: list[int]) -> dict[int, tuple[float, ...]]:
    """Storage id -> objective values, for the trials among these that have values. An RDB storage only."""
    if not trial_ids:
        return {}
    rows = _sql_rows(rdb_backend(study).engine, "SELECT trial_id, objective, value, value_type FROM trial_values "
                     "WHERE trial_id IN :ids", ("ids",), ids=trial_ids)
    by_trial: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, kind in rows:
        by_trial.setdefault(int(trial_id), {})[int(objective)] = _objective_value(value, kind)
    return {trial_id: tuple(v[k] for k in sorted(v)) for trial_id, v in by_trial.items()}


def read_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """One trial by storage id, as stored now."""
    return study._storage.get_trial(trial_id)  # noqa: SLF001


def read_whole(engine: sqlalchemy.engine.Engine, trial_ids: list[int]) -> list[FrozenTrial]:
    """The trials with these storage ids, in id order, as Optuna's ``RDBStorage._get_trials`` builds them, from one
    statement per ``CHUNK`` of ids (each worker reads each trial whole at least twice: a round trip per table was
    most of a PostgreSQL trial's statements)."""
    trials: list[FrozenTrial] = []
    with committed_statements(engine) as connection:
        for start in range(0, len(trial_ids), CHUNK):
            trials += _read_chunk(connection, sorted(trial_ids)[start:start + CHUNK])
    return trials


# One row per stored item, tagged by its table: (kind, trial id, row id, name, number, text, integer, start, end).
# Enums are read as their names (on PostgreSQL each is a type of its own, which one column cannot hold); NULLs in
# later branches take the first branch's column types (both SQLite and PostgreSQL resolve a UNION so).
_WHOLE = sqlalchemy.text(" UNION ALL ".join([
    "SELECT 0 AS kind, trial_id, trial_id AS row_id, CAST(state AS VARCHAR(32)) AS name, CAST(NULL AS FLOAT) AS "
    "number, CAST(NULL AS TEXT) AS body, number AS whole, datetime_start AS started, datetime_complete AS ended "
    "FROM trials WHERE trial_id IN :ids",
    "SELECT 1, trial_id, param_id, param_name, param_value, distribution_json, NULL, NULL, NULL FROM trial_params "
    "WHERE trial_id IN :ids",
    "SELECT 2, trial_id, trial_value_id, CAST(value_type AS VARCHAR(32)), value, NULL, objective, NULL, NULL "
    "FROM trial_values WHERE trial_id IN :ids",
    "SELECT 3, trial_id, trial_user_attribute_id, key, NULL, value_json, NULL, NULL, NULL "
    "FROM trial_user_attributes WHERE trial_id IN :ids",
    "SELECT 4, trial_id, trial_system_attribute_id, key, NULL, value_json, NULL, NULL, NULL "
    "FROM trial_system_attributes WHERE trial_id IN :ids",
    "SELECT 5, trial_id, trial_intermediate_value_id, CAST(intermediate_value_type AS VARCHAR(32)), "
    "intermediate_value, NULL, step, NULL, NULL FROM trial_intermediate_values WHERE trial_id IN :ids",
]) + " ORDER BY kind, row_id").bindparams(sqlalchemy.bindparam("ids", expanding=True)) \
    .columns(started=sqlalchemy.DateTime, ended=sqlalchemy.DateTime)
_STEP_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType


def _read_chunk(connection: sqlalchemy.engine.Connection, ids: list[int]) -> list[FrozenTrial]:
    fields: dict[int, dict] = {}
    for kind, trial_id, _, name, number, body, whole, started, ended in connection.execute(_WHOLE, {"ids": ids}):
        if kind == 0:
            fields[trial_id] = {"number": whole, "state": TrialState[name], "datetime_start": _local(started),
                                "datetime_complete": _local(ended), "params": {}, "distributions": {},
                                "values": [], "user_attrs": {}, "system_attrs": {}, "intermediate_values": {}}
            continue
        trial = fields[trial_id]  # rows come by kind: the trial's own row first
        if kind == 1:
            distribution = _distribution(body)
            trial["params"][name] = distribution.to_external_repr(number)
            trial["distributions"][name] = distribution
        elif kind == 2:
            trial["values"].append((whole, _objective_value(number, name)))
        elif kind in (3, 4):
            trial["user_attrs" if kind == 3 else "system_attrs"][name] = json.loads(body)
        else:
            trial["intermediate_values"][whole] = models.TrialIntermediateValueModel \
                .stored_repr_to_intermediate_value(number, _STEP_TYPE[name])
    return [FrozenTrial(value=None, trial_id=trial_id,
                        **{**trial, "values": [value for _, value in sorted(trial["values"])] or None})
            for trial_id, trial in sorted(fields.items())]


def _objective_value(stored: float | None, kind: str) -> float:
    """An objective value as Optuna decodes it from its row: an infinite one is stored as its sign, no number."""
    return float(models.TrialValueModel.stored_repr_to_value(stored, models.TrialValueModel.TrialValueType[kind]))


@functools.lru_cache(maxsize=4096)
def _distribution(json_text: str) -> BaseDistribution:
    """A stored distribution, decoded once per distinct JSON (a study has a few dozen; Optuna decodes each row
    twice)."""
    return json_to_distribution(json_text)


def _local(stored: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC time as the naive local time Optuna's trial model gives."""
    return stored.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None) if stored else None
