"""Optuna storage: opening it, the budget lock, sweeping dead workers' trials, masking passwords.

Default: SQLite in WAL mode with a 60 s busy timeout. WAL lets readers (``nas status``, reports) run while
workers write, and the busy timeout makes concurrent writers wait for the lock instead of failing, so
several local worker processes share one file without losing a trial. PostgreSQL URLs work unchanged.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, status and reports)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage for ``url``; an unreachable or unknown URL is a ConfigError naming it (masked)."""
    path = sqlite_path(url)
    if url.startswith("sqlite") and path is None:
        raise ConfigError(f"storage: SQLite URLs look like sqlite:///path/to/study.db, got {url!r}")
    if path is not None:
        if not path.exists() and not create:
            raise ConfigError(f"storage: {path} does not exist (no study has run there yet)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"storage: cannot open {path} ({exc})") from None
        kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith(("postgresql", "mysql")):
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        raise ConfigError(f"storage: unsupported URL {mask_url(url)!r}; use sqlite:///... or postgresql://...")
    # Processes opening a new storage at once would all create its tables; the losers fail on a unique key.
    # Readers (create=False) find the tables made and take no lock, so a read-only copy stays readable.
    creating = create and not url.startswith("mysql")
    schema_lock = named_lock(url, "nas-explorer schema") if creating else contextlib.nullcontext()
    try:
        with schema_lock:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_compatibility_check=False)
    except Exception as exc:  # sqlalchemy raises many types; the user needs the URL and the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage: cannot connect to {mask_url(url)}: {mask_url(first)[:200]}") from None


def load_study(name: str, url: str) -> optuna.Study:
    """An existing study; a missing one is a ConfigError listing the studies that are there."""
    storage = open_storage(url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise ConfigError(f"study {name!r} not found in {mask_url(url)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Serializes "count the budget, then reserve a trial" across processes (and machines on PostgreSQL)."""
    with named_lock(url, study_name):
        yield


@contextlib.contextmanager
def named_lock(url: str, name: str) -> Iterator[None]:
    """An exclusive lock across processes: a file lock beside a SQLite file, an advisory lock on PostgreSQL."""
    path = sqlite_path(url)
    if path is not None:
        with open(f"{path}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:7], "big")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


def worker_identity() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this host; a zombie (exited, never reaped) counts as dead.

    A killed run's workers stay zombies wherever nothing reaps orphans (a container whose PID 1 is no init).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal's answer stands


def is_stale(trial: FrozenTrial, stale_after_s: float) -> bool:
    """A RUNNING trial whose worker is gone: a dead pid on this host, or no heartbeat for ``stale_after_s``."""
    attrs = trial.user_attrs
    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        return not _pid_alive(int(attrs["pid"]))
    heartbeat = attrs.get("heartbeat") or (trial.datetime_start.timestamp() if trial.datetime_start else 0)
    return time.time() - heartbeat > stale_after_s


def fail_stale_trials(study: optuna.Study, stale_after_s: float = 900.0, url: str | None = None) -> list[int]:
    """Marks RUNNING trials of dead workers FAIL with a reason; returns their numbers.

    With the storage ``url``, also the trials their worker never stamped with its host and pid: it was killed
    between creating a trial and stamping it, both done under the budget lock, so a trial still unstamped once
    this process holds that lock has no worker left.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = [t for t in running if is_stale(t, stale_after_s)]
    unstamped = {t.number for t in running if "host" not in t.user_attrs} - {t.number for t in stale}
    if url is not None and unstamped:
        with budget_lock(url, study.study_name):
            stale += [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                      if t.number in unstamped and "host" not in t.user_attrs]
    failed = []
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "reason",  # noqa: SLF001 (no public API for this)
                                           "worker died while the trial was running")
        study._storage.set_trial_user_attr(trial._trial_id, "killed", True)  # noqa: SLF001
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        except RuntimeError:
            continue  # it finished meanwhile
        failed.append(trial.number)
    return failed
