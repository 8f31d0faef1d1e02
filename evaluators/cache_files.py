"""Cache files that several processes share: written whole (temp file, then rename), so a reader never sees half."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from evaluators.errors import DatasetError


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temp file beside ``path``, then rename it onto ``path`` (atomic on one file system)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as handle:
            try:
                write(handle)
            except BaseException:
                handle.close()
                os.unlink(handle.name)
                raise
        os.replace(handle.name, path)
    except OSError as err:
        raise DatasetError(f"cache_dir {path.parent}: cannot write {path.name} ({err.strerror or err}); "
                           f"expected a writable folder (set NAS_CACHE_DIR)") from err
