"""``nas dashboard``: optuna-dashboard serves the study with its metric names, infeasible trials marked
infeasible (so its Pareto plot keeps them apart), and stops; without the extra, one line names it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from conftest import write_study
from nas.cli import main
from nas.study.records import TrialRecord

DATA = {"name": "synthetic", "shape": [40], "classes": 4, "samples": 200}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float) -> dict:
    """The JSON at ``url``, retried until the server answers or ``deadline`` passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def test_the_dashboard_serves_metric_names_and_marks_infeasible_trials(workdir, capsys):
    pytest.importorskip("optuna_dashboard", reason="pip install -e '.[dashboard]'")
    study_file = write_study(workdir / "s.yaml", dataset=DATA, budget={"trials": 16}, baseline={"trials": 0},
                             constraints={"max_params": 1500},  # so some sampled genomes are infeasible
                             search_space={"preset": "perm-cnn-1d", "stages": 1, "channels": [8, 16]})
    assert main(["run", str(study_file), "--simulate"]) == 0
    capsys.readouterr()
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny/study.db").get_trials()
    infeasible = {t.number for t in trials if TrialRecord.of(t).infeasible}
    feasible = {t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE} - infeasible
    assert infeasible and feasible, "the study should hold both kinds for this test to mean anything"

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", str(study_file), "--port", str(port)],
                              cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "NO_COLOR": "1"})
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        studies = get_json(base, time.time() + 60)["study_summaries"]
        (study_id,) = [s["study_id"] for s in studies if s["study_name"] == "tiny"]
        detail = get_json(f"{base}/{study_id}", time.time() + 30)
        assert detail["objective_names"] == ["val_accuracy", "params"]
        constraints = {t["number"]: t["constraints"] for t in detail["trials"]}
        assert all(constraints[n] and constraints[n][0] > 0 for n in infeasible)
        assert all(constraints[n] == [0.0] for n in feasible)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # never leave a server behind, whatever failed
            raise
    assert server.returncode == 0, output
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in output and "stopped" in output


def test_without_the_extra_the_command_names_it(workdir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # how Python reports a module that is not there
    assert main(["dashboard", "tiny"]) == 2
    assert "pip install -e '.[dashboard]'" in capsys.readouterr().err
