"""What changed in a study since a last look, read from its SQL storage in a few small queries (the ledger's reads).

On an RDB storage: the changed trials' states from the trials table alone, then only the attributes and values the
ledger indexes; trials are read whole only when asked for. Other storages fall back to Optuna's trial list.
"""
from __future__ import annotations

import json
import math

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from nas.study.storage import storage_trial_id
from nas.study.trial_writes import committed_statements


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


def _sql_rows(study: optuna.Study, query: str, lists: tuple[str, ...] = (), **params) -> list:
    """The rows of ``query`` on the study's SQL storage; the parameters named in ``lists`` fill ``IN :name``. One
    statement, in autocommit on PostgreSQL (no BEGIN and ROLLBACK round trips around it)."""
    statement = sqlalchemy.text(query).bindparams(*(sqlalchemy.bindparam(name, expanding=True) for name in lists))
    with committed_statements(rdb_backend(study).engine) as connection:
        return connection.execute(statement, params).all()


def changed_states(study: optuna.Study, after_id: int,
                   unfinished_ids: set[int]) -> list[tuple[int, int, TrialState]] | None:
    """(storage id, number, state) of the trials :func:`changed_trials` would read, from one query on the trials
    table alone (no parameters, values or attributes); None on a storage without SQL."""
    if rdb_backend(study) is None:
        return None
    query = "SELECT trial_id, number, state FROM trials WHERE study_id = :study_id AND (trial_id > :after"
    ids = {"ids": sorted(unfinished_ids)} if unfinished_ids else {}
    rows = _sql_rows(study, query + (" OR trial_id IN :ids)" if ids else ")"), tuple(ids),
                     study_id=study._study_id, after=after_id, **ids)  # noqa: SLF001
    return [(int(trial_id), int(number), TrialState[state]) for trial_id, number, state in rows]


def read_trials(study: optuna.Study, trial_ids: list[int]) -> list[FrozenTrial]:
    """The trials with these storage ids, whole (parameters, values, attributes), in one read."""
    if not trial_ids:
        return []
    backend = rdb_backend(study)
    if backend is None:
        wanted = set(trial_ids)
        return [t for t in study.get_trials(deepcopy=False) if storage_trial_id(t) in wanted]
    # Optuna reads "these ids, or any above a bound": a bound no id reaches (the largest 32-bit id) keeps it to these
    return backend._get_trials(study._study_id, states=None, included_trial_ids=set(trial_ids),  # noqa: SLF001
                               trial_id_greater_than=2**31 - 1)


def read_user_attrs(study: optuna.Study, trial_ids: list[int], keys: tuple[str, ...],
                    prefix: str) -> dict[int, dict]:
    """Storage id -> the user attributes named in ``keys`` or starting with ``prefix``, for these trials only: a
    running trial's curve and heartbeat, rewritten every epoch, are not read. An RDB storage only."""
    if not trial_ids:
        return {}
    rows = _sql_rows(study, "SELECT trial_id, key, value_json FROM trial_user_attributes WHERE trial_id IN :ids "
                            "AND (key IN :keys OR key LIKE :prefix)", ("ids", "keys"),
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
    rows = _sql_rows(study, "SELECT trial_id, objective, value, value_type FROM trial_values WHERE trial_id IN :ids",
                     ("ids",), ids=trial_ids)
    by_trial: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, kind in rows:  # Optuna stores an infinite value as its sign, no number
        number = {"INF_POS": math.inf, "INF_NEG": -math.inf}.get(kind, value)
        by_trial.setdefault(int(trial_id), {})[int(objective)] = float(number)
    return {trial_id: tuple(v[k] for k in sorted(v)) for trial_id, v in by_trial.items()}


def read_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """One trial by storage id, as stored now."""
    return study._storage.get_trial(trial_id)  # noqa: SLF001
