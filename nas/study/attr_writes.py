"""Several user attributes of one trial in one storage statement.

Optuna commits each ``set_user_attr`` on its own, and each costs two statements (read the trial's state, upsert the
attribute); a trial writes about 25 attributes in ten groups (what it sampled, each epoch's curve and heartbeat, its
result). On SQLite and PostgreSQL a group is written here as one transaction of two statements: the trial's state
(a finished trial refuses the whole group, as Optuna refuses an attribute) and one multi-row upsert. Any other
storage, or an error in the batch, falls back to one ``set_user_attr`` per attribute.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

import optuna


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


def set_user_attrs(trial: Any, values: dict[str, Any]) -> None:
    """Writes ``values`` as user attributes of ``trial``, in one statement where the storage allows it."""
    target = _target(trial) if len(values) > 1 else None
    backend = getattr(target[0], "_backend", target[0]) if target is not None else None
    upsert = _upsert(backend.engine.name, target[1], values) \
        if isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "check_trial_is_updatable") else None
    if upsert is not None:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        _, trial_id, cached = target
        try:
            with _create_scoped_session(backend.scoped_session) as session:
                state = models.TrialModel.find_or_raise_by_id(trial_id, session).state
                backend.check_trial_is_updatable(trial_id, state)  # noqa: the public check Optuna runs per attribute
                session.execute(upsert)
        except optuna.exceptions.StorageInternalError:
            pass  # rolled back whole: written one by one below, where the failing attribute raises on its own
        else:
            if cached is not None:
                cached.user_attrs.update(values)
            return
    for key, value in values.items():
        trial.set_user_attr(key, value)
