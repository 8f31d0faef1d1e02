"""Optuna storage: opening it, the budget lock, sweeping dead workers' trials, masking passwords.

With ``nas.study.changed_reads`` (the reads of what changed since a last look), the modules that reach into
Optuna's storage API below ``Study`` (a trial opened by number, a state told from outside its worker):
:class:`StoredTrial`, :func:`fail_stale_trials`.

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
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError
from nas.study.config import StudyConfig, parse_config
from nas.study.records import TrialRecord, read_study, write
from nas.study.trial_writes import set_system_attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, status and reports)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def stored_config(study: optuna.Study, url: str) -> StudyConfig:
    """The config ``nas run`` stored in ``study``; one line naming the study (password masked) when it has none."""
    config = read_study(study, "config")
    if config is None:
        raise ConfigError(f"study {study.study_name!r} in {mask_url(url)} has no stored config; it was not created "
                          "by `nas run`")
    return parse_config(config, f"study {study.study_name!r} config")


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _sqlite_without_fsync_per_commit(connection, _record) -> None:
    """WAL with ``synchronous=NORMAL``: a commit no longer waits for the disk (4-5 ms each, and a trial writes
    ~25 attributes); the database stays consistent, and only a power loss, never a killed process, can roll back
    the last commits (benchmarks/RESULTS.md "Scale")."""
    connection.execute("PRAGMA synchronous=NORMAL")


IDLE_PING_S = 10.0  # a pooled connection idle longer than this is pinged before use


def _ping_after_idle(engine: sqlalchemy.engine.Engine) -> None:
    """Pings a pooled server connection before use only when it sat idle over ``IDLE_PING_S`` (a trial's training,
    a long wait), and replaces it when the ping fails (the pool retries on DisconnectionError). SQLAlchemy's
    ``pool_pre_ping`` pings at every checkout: one more round trip for every storage call."""
    def checkin(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) <= IDLE_PING_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:  # the driver's error for a closed connection
            alive = False
        if not alive:
            raise sqlalchemy.exc.DisconnectionError("connection closed while idle")

    sqlalchemy.event.listen(engine, "checkin", checkin)
    sqlalchemy.event.listen(engine, "checkout", checkout)


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
    elif url.startswith("postgresql"):
        # One idle connection kept per process, more opened only while threads overlap (the heartbeat): with
        # SQLAlchemy's default pool of 5, 32 workers held ~3 each and PostgreSQL's default 100 slots ran out.
        # Liveness is checked by _ping_after_idle, not pool_pre_ping (a round trip per storage call).
        kwargs = {"pool_size": 1, "max_overflow": 8, "connect_args": {"connect_timeout": 10}}
    elif url.startswith("mysql"):
        raise ConfigError(f"storage: MySQL is not supported ({mask_url(url)!r}): the budget lock that keeps concurrent "
                          "workers to the exact budget exists for SQLite and PostgreSQL only; use one of those")
    else:
        raise ConfigError(f"storage: unsupported URL {mask_url(url)!r}; use sqlite:///... or postgresql://...")
    # Processes opening a new storage at once would all create its tables; the losers fail on a unique key.
    # Readers (create=False) find the tables made and take no lock, so a read-only copy stays readable.
    schema_lock = named_lock(url, "nas-explorer schema") if create else contextlib.nullcontext()
    try:
        with schema_lock:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_compatibility_check=False)
        if path is not None:
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_without_fsync_per_commit)
            storage.engine.dispose()  # connections opened before the listener reconnect with it
        else:
            _ping_after_idle(storage.engine)
        return storage
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


def load_with_baseline(name: str, url: str) -> tuple[optuna.Study, optuna.Study | None]:
    """A study and its dense baseline (None if it has none), as ``nas run`` linked them."""
    study = load_study(name, url)
    baseline_name = read_study(study, "baseline_study")
    return study, (load_study(baseline_name, url) if baseline_name else None)


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
    key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:7], "big")
    with _lock_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except Exception:
                connection.invalidate()  # closed, not pooled: the server drops the session's locks with it
                raise


_LOCK_ENGINES: dict[tuple[int, str], sqlalchemy.engine.Engine] = {}


def _lock_engine(url: str) -> sqlalchemy.engine.Engine:
    """This process's engine for advisory locks on ``url``: one pooled connection, reused by every lock (a new
    connection per lock cost 8 ms on loopback, two per trial). Keyed by pid, as a forked child must not share it."""
    key = (os.getpid(), url)
    if key not in _LOCK_ENGINES:
        engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=4, connect_args={"connect_timeout": 10})
        _ping_after_idle(engine)
        _LOCK_ENGINES[key] = engine
    return _LOCK_ENGINES[key]


def worker_identity() -> dict:
    """What a trial's worker stamps on it: host, pid and the pid's start time (a reused pid has another)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "heartbeat": time.time()}


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22); None without /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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
    """A RUNNING trial whose worker is gone: on this host a dead pid, or a live one started at another time (the
    pid was reused); elsewhere no heartbeat for ``stale_after_s``."""
    record = TrialRecord.of(trial)
    if record.host == socket.gethostname() and record.pid is not None:
        pid = int(record.pid)
        reused = record.pid_start is not None and process_start(pid) != record.pid_start
        return reused or not _pid_alive(pid)
    heartbeat = record.heartbeat or (trial.datetime_start.timestamp() if trial.datetime_start else 0)
    return time.time() - heartbeat > stale_after_s


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's RUNNING trials as stored now, past any trial cache (a worker's cache keeps running trials as of
    their start: ``nas.study.trial_cache``)."""
    storage = study._storage  # noqa: SLF001
    return getattr(storage, "_backend", storage).get_all_trials(study._study_id, deepcopy=False,  # noqa: SLF001
                                                                states=(TrialState.RUNNING,))


def fail_stale_trials(study: optuna.Study, stale_after_s: float, url: str | None = None) -> list[int]:
    """Marks RUNNING trials of dead workers FAIL with a reason; returns their numbers.

    With the storage ``url``, also the trials their worker never stamped with its host and pid: it was killed
    between creating a trial and stamping it, both done under the budget lock, so a trial still unstamped once
    this process holds that lock has no worker left.
    """
    running = running_trials(study)
    stale = [t for t in running if is_stale(t, stale_after_s)]
    unstamped = {t.number for t in running if TrialRecord.of(t).host is None} - {t.number for t in stale}
    if url is not None and unstamped:
        with budget_lock(url, study.study_name):
            stale += [t for t in running_trials(study) if t.number in unstamped and TrialRecord.of(t).host is None]
    return fail_killed(study, stale)


def fail_killed(study: optuna.Study, trials: list[FrozenTrial]) -> list[int]:
    """Marks ``trials`` (RUNNING ones whose worker died) FAIL as killed, not counted in the budget; returns the
    numbers of those still RUNNING until then."""
    failed = []
    for frozen in trials:
        trial = StoredTrial.of(study, frozen)
        try:
            write(trial, reason="worker died while the trial was running", killed=True)
            trial.fail()
        except RuntimeError:  # UpdateFinishedTrialError is one
            continue  # it finished meanwhile
        failed.append(frozen.number)
    return failed


def record_violation(trial: optuna.Trial, violation: float) -> None:
    """Records how far the trial breaks the study's constraints (0: feasible) where both Optuna's samplers and
    optuna-dashboard read it: the list-valued ``constraints`` system attribute. Optuna 5's ``set_constraint``
    writes ``constraints:<name>`` instead, which optuna-dashboard 0.21 does not read: it drew infeasible trials
    as feasible accuracy-0 points on its Pareto plot."""
    value = [float(violation)]
    set_system_attrs(trial.storage, storage_trial_id(trial), {"constraints": value})
    trial._cached_frozen_trial.system_attrs["constraints"] = value  # noqa: SLF001 (what set_constraint updates)


def storage_trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The trial's id in its storage (unique across studies; numbers are unique only within one)."""
    return trial._trial_id  # noqa: SLF001 (no public API for this)


class StoredTrial:
    """A trial opened by its storage id from a process that holds no live ``optuna.Trial`` (a Ray worker, a
    sweep of dead workers' trials); its attributes go straight to the storage."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, number: int):
        self.storage, self.trial_id, self.number = storage, trial_id, number

    @classmethod
    def of(cls, study: optuna.Study, trial: FrozenTrial) -> "StoredTrial":
        return cls(study._storage, storage_trial_id(trial), trial.number)  # noqa: SLF001 (no public API for this)

    def set_user_attr(self, key: str, value) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)

    def frozen(self) -> FrozenTrial:
        return self.storage.get_trial(self.trial_id)

    def fail(self) -> None:
        """Ends the trial FAIL; a RuntimeError when it has finished meanwhile."""
        self.storage.set_trial_state_values(self.trial_id, TrialState.FAIL)
