"""A trial's writes in few storage statements: its user attributes by group, its sampled parameters at once.

Optuna commits each ``set_user_attr`` and each ``suggest_*`` on its own, two statements apiece (read the trial's
state, write the row); a trial writes about 25 attributes in ten groups (what it sampled, each epoch's curve and
heartbeat, its result) and draws about 22 parameters. On SQLite and PostgreSQL an attribute group is one transaction
of two statements (the trial's state: a finished trial refuses the whole group, as Optuna refuses an attribute; one
multi-row upsert), and :func:`batched_params` writes the parameters drawn inside it in one transaction of two, plus a
distribution check the first time a process meets a parameter name (Optuna's own check, which it caches the same
way). Any other storage keeps Optuna's one write per value; so does an attribute group whose batch fails.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any, Iterator

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json


def _target(trial: Any) -> tuple[Any, int, Any] | None:
    """(storage, trial id, the live trial's cached frozen copy or None) of an ``optuna.Trial`` or a
    ``nas.study.storage.StoredTrial``; None for anything else."""
    if isinstance(trial, optuna.Trial):
        return trial.storage, trial._trial_id, trial._cached_frozen_trial  # noqa: SLF001 (no batch API)
    if hasattr(trial, "storage") and hasattr(trial, "trial_id"):
        return trial.storage, trial.trial_id, None
    return None


def _upsert(dialect: str, trial_id: int, values: dict[str, Any]) -> Any | None:
    """One INSERT ... ON CONFLICT DO UPDATE of every attribute in ``values``; None where the dialect has none."""
    from optuna.storages._rdb.models import TrialUserAttributeModel as Model

    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return None
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in values.items()]
    statement = insert(Model).values(rows)
    return statement.on_conflict_do_update(index_elements=[Model.trial_id, Model.key],
                                           set_={"value_json": statement.excluded.value_json})


def _sql_backend(storage: Any) -> Any | None:
    """The RDB storage under Optuna's cache (or given bare) when it is SQLite or PostgreSQL, else None."""
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage) and backend.engine.name in ("sqlite", "postgresql") \
            and hasattr(backend, "check_trial_is_updatable"):
        return backend
    return None


@contextlib.contextmanager
def _updatable_trial_session(backend: Any, trial_id: int) -> Iterator[Any]:
    """One transaction on ``backend``, committed when the block ends; a finished trial refuses it before anything
    is written (the check Optuna runs per value)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session) as session:
        backend.check_trial_is_updatable(trial_id, models.TrialModel.find_or_raise_by_id(trial_id, session).state)
        yield session


def set_user_attrs(trial: Any, values: dict[str, Any]) -> None:
    """Writes ``values`` as user attributes of ``trial``, in one transaction of two statements where the storage
    allows it."""
    target = _target(trial) if len(values) > 1 else None
    backend = _sql_backend(target[0]) if target is not None else None
    upsert = _upsert(backend.engine.name, target[1], values) if backend is not None else None
    if upsert is not None:
        _, trial_id, cached = target
        try:
            with _updatable_trial_session(backend, trial_id) as session:
                session.execute(upsert)
        except optuna.exceptions.StorageInternalError:
            pass  # rolled back whole: written one by one below, where the failing attribute raises on its own
        else:
            if cached is not None:
                cached.user_attrs.update(values)
            return
    for key, value in values.items():
        trial.set_user_attr(key, value)


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
    """One transaction: the trial's state, each name's distribution against the study's, one multi-row insert."""
    from optuna.storages._rdb import models

    known = cache._studies.get(study_id)  # noqa: SLF001 (Optuna's per-study cache of distributions)
    known = known.param_distribution if known is not None else {}
    with _updatable_trial_session(backend, trial_id) as session:
        for name, _, distribution in params:
            previous = known.get(name)
            if previous is None:
                row = session.query(models.TrialParamModel.distribution_json).join(models.TrialModel) \
                    .filter(models.TrialModel.study_id == study_id, models.TrialParamModel.param_name == name).first()
                previous = optuna.distributions.json_to_distribution(row[0]) if row is not None else None
            if previous is not None:
                check_distribution_compatibility(previous, distribution)
        session.execute(models.TrialParamModel.__table__.insert(), [
            {"trial_id": trial_id, "param_name": name, "param_value": value,
             "distribution_json": distribution_to_json(distribution)} for name, value, distribution in params])
    for name, _, distribution in params:
        known.setdefault(name, distribution)
