"""Shared by the test modules: a scratch working directory, study files, the ``nas`` command as a real process."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy
import yaml

from pg_server import postgres_bin, throwaway_server

# Idle OpenMP threads sleep instead of spinning: tests start several torch processes on few shared cores, where
# spinning threads (torch's default) double the CPU time. Set before anything imports torch; CI may override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A study that trains in about a second: tiny synthetic data, one epoch, no pruning, no dense baseline.
TINY_STUDY = {
    "name": "tiny",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 200},
    "search_space": {"preset": "perm-cnn-1d", "stages": 1, "channels": [8], "input_permutations": [1]},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none", "min_epochs": 1, "max_epochs": 1},
    "training": {"batch_size": 32},
    "budget": {"trials": 4},
    "baseline": {"trials": 0},
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory (``runs/`` lands here) with its own dataset cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@contextlib.contextmanager
def scratch_dir(root: Path) -> Iterator[pytest.MonkeyPatch]:
    """``workdir`` for fixtures wider than one test (a module's finished study): ``root`` as the current
    directory with its own dataset cache, undone on exit; yields the MonkeyPatch for more changes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("NAS_CACHE_DIR", str(root / "cache"))
        yield mp


def write_study(path: Path, base: dict = TINY_STUDY, **changes) -> Path:
    """Writes ``base`` (TINY_STUDY by default) with top-level keys replaced by ``changes`` as YAML."""
    path.write_text(yaml.safe_dump({**base, **changes}))
    return path


def study_beside_storage(folder: Path, base: dict, **changes) -> tuple[Path, str]:
    """``<name>.yaml`` in ``folder`` with its SQLite storage beside it (absolute); returns (file, storage URL)."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder}/study.db"
    data = {**base, "storage": url, **changes}
    return write_study(folder / f"{data['name']}.yaml", data), url


def nas_env(cwd: Path) -> dict[str, str]:
    """Environment for a ``nas`` subprocess: the dataset cache under ``cwd``, no colour codes."""
    return {**os.environ, "NAS_CACHE_DIR": str(cwd / "cache"), "NO_COLOR": "1"}


def nas_command(*args: str) -> list[str]:
    """The ``nas`` command line with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "nas.cli", *map(str, args)]


DEFAULT_POSTGRES_URL = "postgresql://nas:nas@127.0.0.1:5432/nas_test"


def reachable(url: str) -> str | None:
    """None when a server answers at ``url``, else the first line of why not (password masked)."""
    from nas.study.storage import mask_url

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
    from nas.study.storage import mask_url

    url = os.environ.get("NAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
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
