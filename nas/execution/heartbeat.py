"""A trial's heartbeat while it trains: a daemon thread writes ``heartbeat`` every ``every_s`` seconds, so a sweep on
another host (``nas.study.storage.fail_stale_trials``, ``execution.stale_after_s``) never takes a long epoch for a
dead worker. The per-epoch records beat too; this covers the time inside an epoch."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from optuna.exceptions import UpdateFinishedTrialError

from nas.study.records import AttributeSink, write


@contextlib.contextmanager
def heartbeat(trial: AttributeSink, every_s: float) -> Iterator[None]:
    """Beats for ``trial`` until the block ends (the thread is joined before the block's caller tells the result)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                write(trial, heartbeat=time.time())
            except UpdateFinishedTrialError:
                return  # swept meanwhile: the fit's own next write ends it cleanly
            except Exception:  # noqa: BLE001  a storage hiccup: the next beat tries again, the fit's writes report it
                continue

    thread = threading.Thread(target=beat, name="nas-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
