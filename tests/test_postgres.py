"""Four ``nas run`` processes started at once on one PostgreSQL study: exactly the budget, no lost results.

Needs a server: ``eval "$(.ci/services.sh)"`` starts one on 127.0.0.1 and exports NAS_TEST_POSTGRES_URL.
Where none can be reached the test is skipped, saying so.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import optuna
import pytest
import sqlalchemy
from conftest import nas_command, nas_env, write_study
from optuna.trial import TrialState

from nas.study.storage import mask_url, open_storage

DEFAULT_URL = "postgresql://nas:nas@127.0.0.1:5432/nas_test"


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The test server's URL, or a skip naming it when no server answers there.

    A missing driver (``psycopg``, SQLAlchemy's default for postgresql://) is an error, not a skip.
    """
    url = os.environ.get("NAS_TEST_POSTGRES_URL", DEFAULT_URL)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        engine.connect().close()
    except sqlalchemy.exc.OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        pytest.skip(f"no PostgreSQL server at {mask_url(url)} ({mask_url(first)}); start one with .ci/services.sh")
    finally:
        engine.dispose()
    return url


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
