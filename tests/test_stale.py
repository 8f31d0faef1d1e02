"""Sweeping dead workers' trials without killing live ones: the heartbeat beats inside an epoch, a reused pid is
not taken for the worker that stamped the trial, and a worker whose trial was swept stops it cleanly."""
from __future__ import annotations

import os
import time

from optuna.trial import TrialState

import conftest
from nas.execution.heartbeat import heartbeat
from nas.execution.trial import run_trial, trial_context
from nas.study.config import parse_config
from nas.study.plan import RunPlan, create_study, reserve_trial
from nas.study.records import TrialRecord, write
from nas.study.storage import StoredTrial, fail_stale_trials, process_start

URL = "sqlite:///runs/tiny/study.db"


def tiny_plan() -> RunPlan:
    return RunPlan(parse_config({**conftest.TINY_STUDY, "storage": URL}), URL)


def test_a_live_pid_started_at_another_time_is_a_dead_worker(workdir):
    plan = tiny_plan()
    study = create_study(plan.config, URL)
    mine, reused = reserve_trial(study, plan), reserve_trial(study, plan)  # both stamped by this live process
    assert TrialRecord.of(study.get_trials()[mine.number]).pid_start == process_start(os.getpid()) is not None
    write(reused, pid_start=process_start(os.getpid()) + 1)  # as if the pid had belonged to an older process
    assert fail_stale_trials(study, stale_after_s=3600, url=URL) == [reused.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL]


def test_the_heartbeat_beats_while_the_block_runs_and_stops_after(workdir):
    plan = tiny_plan()
    study = create_study(plan.config, URL)
    trial = reserve_trial(study, plan)
    started = time.time()
    with heartbeat(trial, every_s=0.05):
        time.sleep(0.5)
    last = TrialRecord.of(study.get_trials()[0]).heartbeat
    assert last > started + 0.3
    time.sleep(0.2)
    assert TrialRecord.of(study.get_trials()[0]).heartbeat == last


def test_a_swept_trial_ends_its_live_worker_cleanly(workdir):
    plan = tiny_plan()
    study = create_study(plan.config, URL)
    trial = reserve_trial(study, plan)
    StoredTrial.of(study, study.get_trials()[0]).fail()  # another host's sweep took this worker for dead
    assert run_trial(trial_context(plan, study), trial) == TrialState.FAIL  # no exception out of the worker
    swept = study.get_trials()[0]
    assert swept.state == TrialState.FAIL and "traceback" not in swept.user_attrs
    following = reserve_trial(study, plan)  # and the worker goes on with the next trial
    assert following is not None and following.number == 1
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING]
