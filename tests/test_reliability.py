"""Failing trials, a run killed with SIGKILL, and concurrent ``nas run`` processes on one SQLite study.

A trial that crashes, diverges to NaN or runs past ``training.trial_timeout_s`` is recorded FAIL with its
reason and the study goes on; a killed run loses no finished trial and its running trials end FAIL on the
next start; four processes started together stop at exactly the budget.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY_STUDY, nas_command, nas_env, write_study
from optuna.trial import FrozenTrial, TrialState

from nas.cli import main
from nas.study.storage import open_storage

URL = "sqlite:///runs/{name}/study.db"  # the default storage, relative to the working directory


def trials_of(name: str) -> list[FrozenTrial]:
    """The study's trials, read while runs may be writing (``open_storage`` waits for a half-made storage)."""
    return optuna.load_study(study_name=name, storage=open_storage(URL.format(name=name))).get_trials(deepcopy=False)


def status_of(study_file: Path, capsys) -> tuple[str, dict]:
    """``nas status`` as people read it, and its ``--json``."""
    capsys.readouterr()
    assert main(["status", str(study_file)]) == 0
    text = capsys.readouterr().out
    assert main(["status", str(study_file), "--json"]) == 0
    return text, json.loads(capsys.readouterr().out)


def assert_failures_listed(study_file: Path, failed: list[FrozenTrial], capsys) -> None:
    text, summary = status_of(study_file, capsys)
    assert summary["trials"]["failed"] == len(failed)
    assert {(f["number"], f["reason"]) for f in summary["failures"]} == \
        {(t.number, t.user_attrs["reason"]) for t in failed}
    for t in failed:
        assert f"trial {t.number} failed: {t.user_attrs['reason']}" in " ".join(text.split())


def test_a_crashing_trial_is_recorded_fail_and_the_study_goes_on(workdir, monkeypatch, capsys):
    import nas.execution.trial

    real_train, calls = nas.execution.trial.train, []

    def train_that_crashes_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(nas.execution.trial, "train", train_that_crashes_once)
    study_file = write_study(workdir / "crash.yaml", name="crash")
    assert main(["run", str(study_file)]) == 0
    trials = trials_of("crash")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["reason"] == "RuntimeError: CUDA out of memory (simulated)"
    assert "Traceback" in trials[1].user_attrs["traceback"]
    assert_failures_listed(study_file, [trials[1]], capsys)


def test_a_diverging_trial_is_recorded_fail_with_the_nan(workdir, capsys):
    space = {**TINY_STUDY["search_space"], "norm": ["none"]}  # no batch norm to tame an lr of 1e7 and up
    study_file = write_study(workdir / "nan.yaml", name="nan", search_space=space, budget={"trials": 3},
                             training={"optimizer": "sgd", "schedule": "constant", "batch_size": 16,
                                       "lr": {"low": 1e7, "high": 1e9, "log": True}})
    assert main(["run", str(study_file)]) == 0
    trials = trials_of("nan")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials) and failed
    for t in failed:
        assert t.user_attrs["reason"].startswith(("training loss became", "validation loss became"))
        assert "nan" in t.user_attrs["reason"] or "inf" in t.user_attrs["reason"]
    assert_failures_listed(study_file, failed, capsys)


def test_a_trial_past_its_timeout_is_recorded_fail(workdir, capsys):
    study_file = write_study(workdir / "slow.yaml", name="slow", budget={"trials": 2},
                             training={"batch_size": 16, "trial_timeout_s": 0.001})
    assert main(["run", str(study_file)]) == 0
    trials = trials_of("slow")
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)
    assert all("ran past its 0.001 s limit" in t.user_attrs["reason"] for t in trials)
    assert_failures_listed(study_file, trials, capsys)


def wait_for_trials(name: str, process: subprocess.Popen, log: Path, ready, timeout: float = 180) -> list[FrozenTrial]:
    """Polls the study's storage until ``ready(trials)``; fails if ``process`` ends or time runs out first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, f"nas run ended early with code {process.returncode}: {log.read_text()}"
        try:
            trials = trials_of(name)
        except KeyError:  # the study is not created yet
            trials = []
        if ready(trials):
            return trials
        time.sleep(0.1)
    pytest.fail(f"study {name!r} not ready after {timeout} s")


def process_group(pgid: int) -> set[int]:
    """The processes in group ``pgid`` (a run and its worker processes)."""
    members = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid:
                members.add(int(entry.name))
        except OSError:
            continue
    return members


def wait_until_gone(pids: set[int], timeout: float = 30) -> None:
    """SIGKILL is delivered asynchronously: wait until each process has exited (a zombie has)."""
    deadline = time.time() + timeout
    for pid in pids:
        while time.time() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                    break
            except OSError:
                break  # gone
            time.sleep(0.05)
        else:
            pytest.fail(f"process {pid} still runs {timeout} s after SIGKILL")


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that count toward the budget: every finished one except those killed with their worker."""
    return [t for t in trials if t.state.is_finished() and not t.user_attrs.get("killed")]


def mid_training(trials: list[FrozenTrial]) -> list[int]:
    """Numbers of the RUNNING trials with one or two epochs stored (of the three the kill test gives them; between
    rungs a curve is written at most every ``CURVE_EVERY_S``, so a stored epoch may lag the trained ones)."""
    return [t.number for t in trials if t.state == TrialState.RUNNING and 1 <= len(t.user_attrs.get("curve", [])) < 3]


def test_sigkill_mid_study_loses_no_finished_trial(workdir):
    budget = 6  # trials of three epochs of a second or so (4,000 samples: at 1,000 a tiny net trained an epoch between
    # two polls of a loaded machine, and the run ended before the kill; epochs stay well over CURVE_EVERY_S), so the
    # kill lands mid-study
    study_file = write_study(workdir / "kill.yaml", name="kill", budget={"trials": budget},
                             dataset={**TINY_STUDY["dataset"], "samples": 4000}, training={"batch_size": 8},
                             pruner={**TINY_STUDY["pruner"], "max_epochs": 3}, execution={"workers": 2})
    with open(workdir / "killed-run.log", "w") as log:
        process = subprocess.Popen(nas_command("run", study_file), cwd=workdir, env=nas_env(workdir),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:  # kill once a trial has finished and another is mid-training: one epoch done, two to go (a RUNNING
            # trial alone may be an infeasible one or a twin, which finish within milliseconds: CI saw that race)
            seen = wait_for_trials("kill", process, workdir / "killed-run.log", lambda ts: mid_training(ts) and any(
                t.state == TrialState.COMPLETE for t in ts))
        finally:
            members = process_group(process.pid)
            with contextlib.suppress(ProcessLookupError):  # it may have ended on its own (the assert says why)
                os.killpg(process.pid, signal.SIGKILL)  # the run and its two worker processes
            process.wait()
    assert len(members) >= 3
    wait_until_gone(members)
    # A worker can die between creating its trial and writing its host and pid: one such trial as well.
    optuna.load_study(study_name="kill", storage=open_storage(URL.format(name="kill"))).ask()
    at_kill = trials_of("kill")
    completed = {t.number: t for t in at_kill if t.state == TrialState.COMPLETE}
    running = [t.number for t in at_kill if t.state == TrialState.RUNNING]
    assert completed and set(mid_training(seen)) <= set(running) and len(finished(at_kill)) < budget

    assert main(["run", str(study_file), "--workers", "1"]) == 0  # in this process: no second start-up
    after = {t.number: t for t in trials_of("kill")}
    assert sorted(after) == list(range(len(after)))
    assert len(finished(after.values())) == budget
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]
    for number, before in completed.items():  # every finished trial is still there, unchanged
        assert after[number].state == TrialState.COMPLETE and after[number].values == before.values
        assert after[number].user_attrs == before.user_attrs
        assert (workdir / "runs" / "kill" / "artifacts" / before.user_attrs["weights_artifact"]).is_file()
    for number in running:
        assert after[number].state == TrialState.FAIL and after[number].user_attrs["killed"]
        assert after[number].user_attrs["reason"] == "worker died while the trial was running"


def test_four_concurrent_runs_share_one_sqlite_budget(workdir):
    budget = 8
    study_file = write_study(workdir / "four.yaml", name="four", budget={"trials": budget})
    processes = [subprocess.Popen(nas_command("run", study_file), cwd=workdir, env=nas_env(workdir),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
    trials = trials_of("four")
    assert sorted(t.number for t in trials) == list(range(budget))
    assert len(finished(trials)) == budget and all(t.state.is_finished() for t in trials)
    for t in trials:
        if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs:
            assert t.values == [t.user_attrs["val_accuracy"], t.user_attrs["params"]]
            assert (workdir / "runs" / "four" / "artifacts" / t.user_attrs["weights_artifact"]).is_file()
