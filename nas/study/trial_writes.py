"""A trial's writes in few storage statements: its user attributes by group, its sampled parameters at once.

Optuna commits each ``set_user_attr`` and each ``suggest_*`` in a transaction of its own (read the trial's state,
read or write the row; on PostgreSQL BEGIN and COMMIT are round trips too); a trial writes about 25 attributes in
ten groups (what it sampled, each epoch's curve and heartbeat, its result) and draws about 22 parameters. On SQLite
and PostgreSQL an attribute group, and the parameters drawn inside :func:`batched_params`, are one statement (in
autocommit on PostgreSQL): an insert (an upsert for attributes) of every row, guarded by the trial's state, so a
finished trial refuses the whole group as Optuna refuses one value. A parameter name this process has not met is
first checked against the study's distribution (Optuna's check, cached the same way). Any other storage keeps
Optuna's one write per value; so does an attribute group whose statement fails.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any, Iterator

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json


def _target(trial: Any) -> tuple[Any, int, Any] | None:
    """(storage, trial id, the live trial's cached frozen copy or None) of an ``optuna.Trial`` or a
    ``nas.study.storage.StoredTrial``; None for anything else."""
    if isinstance(trial, optuna.Trial):
        return trial.storage, trial._trial_id, trial._cached_frozen_trial  # noqa: SLF001 (no batch API)
    if hasattr(trial, "storage") and hasattr(trial, "trial_id"):
        return trial.storage, trial.trial_id, None
    return None


def _sql_backend(storage: Any) -> Any | None:
    """The RDB storage under Optuna's cache (or given bare) when it is PostgreSQL or SQLite 3.35+ (upserts and
    RETURNING), else None."""
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "check_trial_is_updatable") and (
            backend.engine.name == "postgresql" or (backend.engine.name == "sqlite"
                                                    and sqlite3.sqlite_version_info >= (3, 35, 0))):
        return backend
    return None


@contextlib.contextmanager
def committed_statements(engine: sqlalchemy.engine.Engine) -> Iterator[sqlalchemy.engine.Connection]:
    """A connection for single statements that commit: in autocommit on PostgreSQL (no BEGIN and COMMIT round
    trips), in a transaction committed when the block ends on SQLite (where those cost nothing, and switching to
    autocommit and back costs a PRAGMA)."""
    if engine.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection
        return
    with engine.connect() as connection:
        yield connection
        connection.commit()


def _write_if_updatable(backend: Any, trial_id: int, table: str, rows: list[dict],
                        conflict: tuple[str, ...] = ()) -> None:
    """Inserts ``rows`` into ``table`` in one statement (:func:`committed_statements`) that writes nothing unless
    the trial is unfinished; on ``conflict`` (its unique columns) an existing row takes the new values. A finished
    trial raises Optuna's ``UpdateFinishedTrialError``. Plain SQL that SQLite and PostgreSQL both read: building it
    through SQLAlchemy's expression language cost more than the statement on SQLite."""
    from optuna.storages._rdb import models

    columns = list(rows[0])
    values = ", ".join("(" + ", ".join(f":{c}{i}" for c in columns) + ")" for i in range(len(rows)))
    update = f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET " + ", ".join(
        f"{c} = excluded.{c}" for c in columns if c not in conflict) if conflict else ""
    selected = ", ".join(f"column{k + 1}" for k in range(len(columns)))  # VALUES' column names on both
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {selected} FROM (VALUES {values}) AS v "
           f"WHERE EXISTS (SELECT 1 FROM trials WHERE trial_id = :trial AND state IN ('RUNNING', 'WAITING'))"
           f"{update} RETURNING trial_id")
    binds = {f"{c}{i}": row[c] for i, row in enumerate(rows) for c in columns}
    with committed_statements(backend.engine) as connection:
        if not connection.execute(sqlalchemy.text(sql), {**binds, "trial": trial_id}).all():  # nothing written: why?
            state = connection.execute(sqlalchemy.select(models.TrialModel.state)
                                       .where(models.TrialModel.trial_id == trial_id)).scalar()
            if state is None:
                raise KeyError(f"trial {trial_id} does not exist")
            backend.check_trial_is_updatable(trial_id, state)


def _write_attrs(storage: Any, trial_id: int, table: str, values: dict[str, Any]) -> bool:
    """Writes attributes into ``table`` in one statement; False where the storage has no such path or the statement
    failed (then nothing was written)."""
    backend = _sql_backend(storage) if values else None
    if backend is None:
        return False
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in values.items()]
    try:
        _write_if_updatable(backend, trial_id, table, rows, ("trial_id", "key"))
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    return True


def set_user_attrs(trial: Any, values: dict[str, Any]) -> None:
    """Writes ``values`` as user attributes of ``trial``, in one statement where the storage allows it (else, or
    when it fails, one by one with Optuna, where a failing attribute raises on its own)."""
    target = _target(trial)
    if target is not None and _write_attrs(target[0], target[1], "trial_user_attributes", values):
        if target[2] is not None:
            target[2].user_attrs.update(values)
        return
    for key, value in values.items():
        trial.set_user_attr(key, value)


def set_system_attrs(storage: Any, trial_id: int, values: dict[str, Any]) -> None:
    """Writes ``values`` as system attributes of the trial with storage id ``trial_id``, as :func:`set_user_attrs`
    writes user attributes."""
    if not _write_attrs(storage, trial_id, "trial_system_attributes", values):
        for key, value in values.items():
            storage.set_trial_system_attr(trial_id, key, value)


class _ParamBuffer:
    """Stands in for a live trial's storage while it samples: parameter writes are kept, all else passes through."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.params: list[tuple[str, float, BaseDistribution]] = []

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: BaseDistribution) -> None:
        self.params.append((name, value, distribution))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


@contextlib.contextmanager
def batched_params(trial: Any) -> Iterator[None]:
    """Parameters that ``trial`` (a live ``optuna.Trial``) draws inside the block are written when it ends (also
    when it ends in an error, so what was drawn is stored, as with Optuna). The trial sees its values at once;
    other workers see them at the end of the block. A distribution that conflicts with the study's raises there."""
    storage = getattr(trial, "storage", None)
    cached = isinstance(trial, optuna.Trial) and hasattr(getattr(storage, "_studies", None), "get")  # Optuna's cache
    backend = _sql_backend(storage) if cached else None
    if backend is None:
        yield
        return
    buffer = _ParamBuffer(storage)
    trial.storage = buffer
    try:
        yield
    finally:
        trial.storage = storage
        if buffer.params:
            _write_params(storage, backend, trial.study._study_id, trial._trial_id, buffer.params)  # noqa: SLF001


def _write_params(cache: Any, backend: Any, study_id: int, trial_id: int,
                  params: list[tuple[str, float, BaseDistribution]]) -> None:
    """Each name this process has not met checked against the study's distribution, then one guarded insert."""
    from optuna.storages._rdb import models

    known = cache._studies.get(study_id)  # noqa: SLF001 (Optuna's per-study cache of distributions)
    known = known.param_distribution if known is not None else {}
    unknown = [(name, distribution) for name, _, distribution in params if name not in known]
    if unknown:
        column = models.TrialParamModel.distribution_json
        with committed_statements(backend.engine) as connection:  # one stored distribution per name: they agree
            stored = dict(connection.execute(
                sqlalchemy.select(models.TrialParamModel.param_name, sqlalchemy.func.min(column))
                .join(models.TrialModel).where(models.TrialModel.study_id == study_id,
                                               models.TrialParamModel.param_name.in_([n for n, _ in unknown]))
                .group_by(models.TrialParamModel.param_name)).all())
        for name, distribution in unknown:
            if name in stored:
                check_distribution_compatibility(optuna.distributions.json_to_distribution(stored[name]), distribution)
    _write_if_updatable(backend, trial_id, "trial_params", [
        {"trial_id": trial_id, "param_name": name, "param_value": value,
         "distribution_json": distribution_to_json(distribution)} for name, value, distribution in params])
    for name, _, distribution in params:
        known.setdefault(name, distribution)
