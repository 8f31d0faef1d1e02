"""``nas dashboard STUDY_OR_YAML``: optuna-dashboard on the study's storage (the optional ``dashboard`` extra).

The study's objectives carry their names (``val_accuracy``, ``params``) and its infeasible genomes their
constraint violation, so the dashboard labels both axes and keeps infeasible trials apart from the Pareto plot.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from nas.cli.output import console
from nas.cli.target import add_storage_argument, resolve_target
from nas.errors import ConfigError

INSTALL = "pip install -e '.[dashboard]'"


def register(sub: argparse._SubParsersAction) -> None:
    dashboard = sub.add_parser("dashboard", help="serve optuna-dashboard on a study's storage (extra 'dashboard')")
    dashboard.add_argument("study", help="study YAML file or study name")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    add_storage_argument(dashboard)
    dashboard.set_defaults(handler=dashboard_command)


def optuna_dashboard():
    """The optuna_dashboard module; a ConfigError with the install command when the extra is missing."""
    try:
        import optuna_dashboard as module
    except ImportError:
        raise ConfigError(f"nas dashboard needs optuna-dashboard, which is not installed: {INSTALL}") from None
    return module


def _stop(*_) -> None:
    """SIGTERM: ends the process at once. The server holds nothing to save, and unwinding through its
    request loop could wait on a request in flight (seen once in the test suite: 30 s and still serving)."""
    console.print("optuna-dashboard stopped")
    sys.stdout.flush()
    os._exit(0)


def dashboard_command(args: argparse.Namespace) -> int:
    from nas.study.plan import artifact_dir
    from nas.study.storage import load_study, mask_url, sqlite_path

    module = optuna_dashboard()
    name, url, config = resolve_target(args.study, args.storage)
    study = load_study(name, url)  # a missing study is one line listing those there, before the server starts
    weights = artifact_dir(config, url) if config is not None else \
        (sqlite_path(url).parent / "artifacts" if sqlite_path(url) else None)
    store = None
    if weights is not None and weights.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        store = FileSystemArtifactStore(str(weights))
    console.print(f"optuna-dashboard on {mask_url(url)}: study {name!r} at "
                  f"http://{args.host}:{args.port}/dashboard/studies/{study._study_id} (Ctrl-C stops)")
    signal.signal(signal.SIGTERM, _stop)  # a service manager's (or a test's) stop
    try:
        module.run_server(study._storage, host=args.host, port=args.port, artifact_store=store)
    except KeyboardInterrupt:
        pass  # optuna-dashboard's server may catch it itself and return: either way it has stopped
    console.print("optuna-dashboard stopped")
    return 0
