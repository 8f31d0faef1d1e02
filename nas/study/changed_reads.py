"""What changed in a study since a last look, read from its SQL storage in a few small queries (the ledger's and
the workers' trial cache's reads).

On an RDB storage: the changed trials' states from the trials table alone, then only the attributes and values the
ledger indexes; trials are read whole only when asked for, by :func:`read_whole` (plain queries, one per table, not
Optuna's ORM load). Other storages fall back to Optuna's trial list.
"""
from __future__ import annotations

import datetime
import functools
import json
import math

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from nas.study.storage import storage_trial_id
from nas.study.trial_writes import committed_statements

CHUNK = 5000  # trial ids per query: within SQLite's limit of bound parameters


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
    for trial_id, objective, value, kind in rows:  # Optuna stores an infinite value as its sign, no number
        number = {"INF_POS": math.inf, "INF_NEG": -math.inf}.get(kind, value)
        by_trial.setdefault(int(trial_id), {})[int(objective)] = float(number)
    return {trial_id: tuple(v[k] for k in sorted(v)) for trial_id, v in by_trial.items()}


def read_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """One trial by storage id, as stored now."""
    return study._storage.get_trial(trial_id)  # noqa: SLF001


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
