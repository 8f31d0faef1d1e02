"""Four ``nas run`` processes started at once on one PostgreSQL study: exactly the budget, no lost results.

Uses the server at NAS_TEST_POSTGRES_URL (``eval "$(.ci/services.sh)"`` starts one and exports it); where none
answers but PostgreSQL is installed, a throwaway server of its own (``tests/pg_server.py``); it is skipped, naming
the package, only on a machine without PostgreSQL.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from typing import Iterator

import optuna
import pytest
import sqlalchemy
from conftest import nas_command, nas_env, write_study
from pg_server import postgres_bin, throwaway_server
from optuna.trial import TrialState

from nas.study.storage import mask_url, open_storage

DEFAULT_URL = "postgresql://nas:nas@127.0.0.1:5432/nas_test"


def reachable(url: str) -> str | None:
    """None when a server answers at ``url``, else the first line of why not (password masked)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        engine.connect().close()
        return None
    except sqlalchemy.exc.OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return mask_url(first)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``NAS_TEST_POSTGRES_URL`` (or the default) when a server answers there; else, when the PostgreSQL binaries
    are installed, a throwaway server of the test's own; a skip naming the package only when neither exists.

    A missing driver (``psycopg``, SQLAlchemy's default for postgresql://) is an error, not a skip.
    """
    url = os.environ.get("NAS_TEST_POSTGRES_URL", DEFAULT_URL)
    why = reachable(url)
    if why is None:
        yield url
        return
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server at {mask_url(url)} ({why}) and no server binaries to start one: "
                    "apt-get install postgresql")
    with throwaway_server(bin_dir) as own:
        yield own


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
