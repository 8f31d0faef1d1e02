"""Four ``nas run`` processes started at once on one PostgreSQL study: exactly the budget, no lost results.

Uses the server at NAS_TEST_POSTGRES_URL (``eval "$(.ci/services.sh)"`` starts one and exports it); where none
answers but PostgreSQL is installed, a throwaway server of its own (``tests/pg_server.py``); it is skipped, naming
the package, only on a machine without PostgreSQL.
"""
from __future__ import annotations

import subprocess
import uuid

import optuna
import sqlalchemy
from conftest import nas_command, nas_env, write_study
from optuna.trial import TrialState

from nas.study.storage import open_storage

def test_four_concurrent_runs_share_one_postgres_budget(workdir, postgres_url):
    budget, name = 8, f"pg-{uuid.uuid4().hex[:8]}"
    study_file = write_study(workdir / "pg.yaml", name=name, budget={"trials": budget}, storage=postgres_url)
    processes = [subprocess.Popen(nas_command("run", study_file), cwd=workdir, env=nas_env(workdir),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    storage = open_storage(postgres_url)
    try:
        assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(budget))
        assert all(t.state.is_finished() and not t.user_attrs.get("killed") for t in trials)
        for t in trials:
            if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs:
                assert t.values == [t.user_attrs["val_accuracy"], t.user_attrs["params"]]
                assert (workdir / "runs" / name / "artifacts" / t.user_attrs["weights_artifact"]).is_file()
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_a_study_nas_run_did_not_create_is_refused_in_one_line_without_the_password(workdir, postgres_url, capsys):
    """``nas export`` and ``nas findings --final`` on a bare Optuna study: exit 2, one line, the password masked."""
    from nas.cli import main
    from nas.study.storage import mask_url

    name = f"bare-{uuid.uuid4().hex[:8]}"
    storage = open_storage(postgres_url)
    optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    try:
        for command in (["export", name, "--out", str(workdir / "out")], ["findings", name, "--final"]):
            assert main([*command, "--storage", postgres_url]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"study {name!r} in {mask_url(postgres_url)}" in err
            assert "has no stored config" in err and postgres_url not in err
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_a_process_keeps_one_idle_postgres_connection_after_threads_overlapped(postgres_url):
    """PostgreSQL serves 100 connections by default; SQLAlchemy's default pool kept up to 5 per process, and 32
    local workers (~3 each) ran out (benchmarks/RESULTS.md "Scale"). Overlapping threads still get connections."""
    import threading

    storage = open_storage(postgres_url)
    engine = storage.engine
    engine.dispose()
    held, release = [], threading.Event()

    def hold() -> None:
        with engine.connect() as connection:
            held.append(connection.exec_driver_sql("SELECT 1").scalar())
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # up to 30 s for three connections open at once
        if len(held) == 3:
            break
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join()
    assert held == [1, 1, 1] and engine.pool.checkedin() == 1  # the other two closed on return
    engine.dispose()


def test_a_connection_the_server_closed_while_idle_is_replaced(postgres_url, monkeypatch):
    """Without a ping at every checkout (a round trip per storage call), a pooled connection that sat idle is pinged
    before use; one the server closed meanwhile is replaced, and the storage call succeeds."""
    import nas.study.storage as storage_module

    storage = open_storage(postgres_url)
    assert not storage.engine.pool._pre_ping  # no round trip at every checkout
    name = f"idle-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)
    try:
        with storage.engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        killer = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
        with killer.connect() as connection:
            assert connection.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
        killer.dispose()
        monkeypatch.setattr(storage_module, "IDLE_PING_S", -1.0)  # every pooled connection counts as idle
        study.ask()  # on the killed connection this raises OperationalError
        with storage.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_named_lock_excludes_another_process_and_reuses_one_connection(postgres_url):
    """The budget lock (a PostgreSQL advisory lock) keeps a second process out until the first lets go, and a
    process takes it again on a connection it keeps (a new connection per lock cost 8 ms, twice a trial:
    benchmarks/RESULTS.md "Scale")."""
    import sys
    import textwrap
    import time

    from nas.study.storage import _lock_engine, named_lock

    name = f"lock-{uuid.uuid4().hex[:8]}"
    child = textwrap.dedent("""
        import sys, time
        from nas.study.storage import named_lock
        with named_lock(sys.argv[1], sys.argv[2]):
            print(time.time())
    """)
    with named_lock(postgres_url, name):
        waiter = subprocess.Popen([sys.executable, "-c", child, postgres_url, name], stdout=subprocess.PIPE, text=True)
        time.sleep(3.0)
        assert waiter.poll() is None  # still waiting for the lock
        released = time.time()
    acquired = float(waiter.communicate(timeout=60)[0])
    assert waiter.returncode == 0 and acquired >= released
    connects = []
    sqlalchemy.event.listen(_lock_engine(postgres_url).pool, "connect", lambda *_: connects.append(1))
    for _ in range(3):
        with named_lock(postgres_url, name):
            pass
    assert connects == []  # the first lock's connection, kept in the pool
