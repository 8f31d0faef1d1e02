"""A throwaway PostgreSQL server for the tests, when the binaries are installed but no server answers.

``.ci/services.sh`` starts the machine's server in CI; on a developer's machine with Debian's ``postgresql``
installed but not running, ``make test`` still runs the PostgreSQL tests against a server of its own: initdb in
a temporary folder, a free port on 127.0.0.1, stopped and deleted afterwards. As root (initdb refuses root) the
server runs as the ``postgres`` system user the package creates.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

USER, PASSWORD, DATABASE = "nas", "nas", "nas_test"


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<version>/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_server(bin_dir: Path) -> Iterator[str]:
    """Starts a private server; yields its URL (role ``nas``, database ``nas_test``); stops and deletes it."""
    folder = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
            "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
        sql = (f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';"
               f"CREATE DATABASE {DATABASE} OWNER {USER};")
        for statement in sql.split(";")[:-1]:
            run(str(bin_dir / "psql"), "-X", "-q", "-h", str(folder), "-p", str(port), "-U", "postgres",
                "-d", "postgres", "-c", statement)
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
