"""Several user attributes of one trial in one storage transaction.

Optuna commits each ``set_user_attr`` on its own; a trial writes about 25 attributes in ten groups (what it sampled,
each epoch's curve and heartbeat, its result), and on SQLite each commit costs about a millisecond. On an RDB
storage a group is written here with Optuna's own per-attribute upsert inside one session and one commit; any
other storage, or an error in the batch, falls back to one ``set_user_attr`` per attribute.
"""
from __future__ import annotations

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


def set_user_attrs(trial: Any, values: dict[str, Any]) -> None:
    """Writes ``values`` as user attributes of ``trial``, in one commit where the storage allows it."""
    target = _target(trial) if len(values) > 1 else None
    backend = getattr(target[0], "_backend", target[0]) if target is not None else None
    if isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit"):
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        _, trial_id, cached = target
        try:
            with _create_scoped_session(backend.scoped_session) as session:
                for key, value in values.items():
                    backend._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id,  # noqa: SLF001
                                                           key, value)
        except optuna.exceptions.StorageInternalError:
            pass  # rolled back whole: written one by one below, where the failing attribute raises on its own
        else:
            if cached is not None:
                cached.user_attrs.update(values)
            return
    for key, value in values.items():
        trial.set_user_attr(key, value)
