"""The Ray Tune backend on real Ray and real training: a driver killed mid-study then resumed, the same records
as the local backend, the rung rule's PRUNED trials, ``nas status``, and a two-node cluster on one machine."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

ray = pytest.importorskip("ray")

from conftest import study_beside_storage  # noqa: E402
from nas.cli import main  # noqa: E402
from nas.study.config import parse_config  # noqa: E402
from nas.study.plan import counted_trials  # noqa: E402
from nas.study.storage import is_stale  # noqa: E402
from nas.study.summary import trained  # noqa: E402

STUDY = {
    "name": "r",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300},
    "search_space": {"preset": "perm-cnn-1d"},
    # max_slowdown off: every stop here is the rung rule's (the slow-trial rule: tests/test_slow_trials.py)
    "pruner": {"name": "asha", "min_epochs": 1, "max_epochs": 3, "reduction_factor": 3, "max_slowdown": None},
    "training": {"lr": 0.01, "batch_size": 64},
    # the killed run reserved up to 9 (many quick infeasible or pruned trials can come before the first complete one,
    # and its workers outlive it briefly): the rerun needs 3+
    "budget": {"trials": 20},
    "baseline": {"trials": 0},
    "execution": {"backend": "ray", "workers": 2},
}


def write_study(folder, **changes) -> tuple[str, str]:
    """A study file in ``folder`` with its storage beside it; returns (file, storage URL)."""
    path, url = study_beside_storage(folder, STUDY, **changes)
    return str(path), url


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="r", storage=url).get_trials()


def started_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, or none while the driver has not created it yet."""
    try:
        return trials_of(url)
    except KeyError:
        return []


def record_kinds(trials: list, state: TrialState) -> set[str]:
    """The user attributes every trained (not infeasible, not copied) trial in ``state`` has."""
    keys = [set(t.user_attrs) for t in trials if t.state == state
            and "infeasible" not in t.user_attrs and "duplicate_of" not in t.user_attrs]
    return set.intersection(*keys) if keys else set()


def wait_for_training(driver: subprocess.Popen, url: str) -> list[optuna.trial.FrozenTrial]:
    """The RUNNING trials that stored a curve, once there are any; the driver must stay alive meanwhile."""
    deadline = time.time() + 150
    while not (training := [t for t in started_trials(url) if t.state == TrialState.RUNNING
                            and t.user_attrs.get("curve")]):
        assert driver.poll() is None, f"the driver ended early: {driver.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no trial trained an epoch within 150 s"
        time.sleep(0.2)
    return training


def end_session(driver: subprocess.Popen) -> None:
    """SIGKILLs what is left of a driver's session (its Ray runtime) and closes its stderr."""
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    driver.stderr.close()


def tune_last_results(root) -> dict[str, dict]:
    """Each Ray trial's last result in the latest experiment under ``root``'s ``runs/r/ray``, by Tune trial id (read
    from Tune's experiment state: its loggers are off)."""
    latest = sorted((root / "runs" / "r" / "ray").glob("r-*"))[-1]
    loaded = [json.loads(entry) if isinstance(entry, str) else entry for path in latest.glob("experiment_state-*.json")
              for pair in json.loads(path.read_text())["trial_data"] for entry in pair]
    return {tune_trial["trial_id"]: runtime["last_result"] for tune_trial, runtime in zip(loaded[::2], loaded[1::2])}


def kill_driver_mid_study(study_file: str, url: str, cwd, env: dict) -> set[int]:
    """Runs ``nas run --backend ray`` as its own process and SIGKILLs it (and its Ray runtime) once a trial has
    completed and another is training; returns the trials seen training then, once the trials left RUNNING have
    no live worker."""
    command = [sys.executable, "-m", "nas.cli", "run", study_file, "--backend", "ray"]
    driver = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        deadline = time.time() + 150
        study = None  # opened once it exists: each look then reads only what changed (the window is short)
        while True:
            assert driver.poll() is None, f"the driver ended before it was killed: {driver.stderr.read()[-2000:]}"
            assert time.time() < deadline, "no trial completed within 150 s"
            if study is None:
                trials = started_trials(url)
                study = optuna.load_study(study_name="r", storage=url) if trials else None
            else:
                trials = study.get_trials(deepcopy=False)
            training = {t.number for t in trials if t.state == TrialState.RUNNING and "curve" in t.user_attrs}
            if any(t.state == TrialState.COMPLETE for t in trials) and training:
                break
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        end_session(driver)  # Ray's agents that outlive their driver
    # a Ray worker may finish its trial (and reserve the next) before Ray ends it: wait until the trials left
    # RUNNING are those of workers that are gone
    deadline = time.time() + 60
    while not all(is_stale(t, float("inf")) for t in trials_of(url) if t.state == TrialState.RUNNING):
        assert time.time() < deadline, "the killed driver's Ray workers still run 60 s later"
        time.sleep(0.2)
    return training


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    """The small study run locally (1 worker), and on Ray: a driver killed mid-study, then ``nas run`` again
    from this process on a 2-CPU local Ray runtime."""
    root = tmp_path_factory.mktemp("ray-study")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("NAS_CACHE_DIR", str(root / "cache"))
        local_file, local_url = write_study(root / "local", execution={"backend": "local", "workers": 1})
        assert main(["run", local_file]) == 0
        ray_file, ray_url = write_study(root / "ray")
        training = kill_driver_mid_study(ray_file, ray_url, root, dict(os.environ))
        before = trials_of(ray_url)
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            assert main(["run", ray_file, "--backend", "ray"]) == 0
        finally:
            ray.shutdown()
        yield {"local": trials_of(local_url), "before": before, "after": trials_of(ray_url), "training": training,
               "ray_file": ray_file, "ray_url": ray_url, "root": root}


def test_a_killed_drivers_trials_are_finished_or_failed_and_the_rerun_finishes_the_budget(killed_then_resumed):
    """A trial training when the driver was killed is either finished by its Ray worker before Ray ends that
    worker, or left RUNNING and marked killed by the rerun; finished trials keep their values."""
    before, after = killed_then_resumed["before"], {t.number: t for t in killed_then_resumed["after"]}
    completed = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    running = {t.number for t in before if t.state == TrialState.RUNNING}
    assert completed
    assert {n: after[n].values for n in completed} == completed
    assert all(after[n].state == TrialState.COMPLETE for n in completed)
    for n in running:
        assert after[n].state == TrialState.FAIL and after[n].user_attrs["killed"]
        assert after[n].user_attrs["reason"] == "worker died while the trial was running"
    for n in killed_then_resumed["training"] - running:  # finished by its worker after the driver died
        assert after[n].state in (TrialState.COMPLETE, TrialState.PRUNED) and "killed" not in after[n].user_attrs
    study = optuna.load_study(study_name="r", storage=killed_then_resumed["ray_url"])
    assert counted_trials(study) == STUDY["budget"]["trials"] and all(t.state.is_finished() for t in after.values())
    rerun = [t for t in after.values() if t.number not in {b.number for b in before}]
    assert rerun and os.getpid() not in {t.user_attrs["pid"] for t in rerun}, \
        "the Ray workers reserve and sample their trials, not the driver (this process)"
    assert len({t.user_attrs["pid"] for t in rerun}) <= STUDY["execution"]["workers"]


def test_a_ray_worker_reserves_a_trial_only_when_it_is_free(killed_then_resumed):
    """Ray Tune keeps one pending trial per searcher for a reason: a sampler that hands out many trials before any
    result draws them all blind. Each Ray worker reserves its next trial only when it has told the last (a guard
    against prefetching): when each trial of the rerun was reserved, at most workers - 1 others of the rerun were
    unfinished (read from the storage's start and end times)."""
    before = {t.number for t in killed_then_resumed["before"]}
    rerun = [t for t in killed_then_resumed["after"] if t.number not in before]
    assert len(rerun) >= 3
    for trial in rerun:
        unfinished = [o.number for o in rerun if o.number != trial.number and o.datetime_start <= trial.datetime_start
                      and (o.datetime_complete is None or o.datetime_complete > trial.datetime_start)]
        assert len(unfinished) <= STUDY["execution"]["workers"] - 1, (trial.number, unfinished)


def test_a_ray_study_holds_the_same_records_as_a_local_one(killed_then_resumed):
    local = killed_then_resumed["local"]
    on_ray = [t for t in killed_then_resumed["after"] if not t.user_attrs.get("killed")]
    assert len(on_ray) == STUDY["budget"]["trials"]
    assert {t.state for t in on_ray} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        if any(t.state == state for t in local):
            missing = record_kinds(local, state) - record_kinds(on_ray, state)
            assert not missing, f"{state.name} trials on Ray lack {sorted(missing)}"
    for t in on_ray:
        attrs = t.user_attrs
        assert attrs["genome"] and attrs["family"]
        assert attrs["node"] and attrs["ray_trial"]  # every trial is reserved by a Ray worker
        if "duplicate_of" not in attrs:  # a copy of a trained genome is told without training
            assert attrs["curve"]
            assert {point["threads"] for point in attrs["curve"]} == {1}  # execution.cpu 1: one torch thread each
        if trained(t):
            assert t.values == [attrs["val_accuracy"], attrs["params"]] and attrs["weights_artifact"]
            assert 0.0 <= attrs["test_accuracy"] <= 1.0
    ray_dir = killed_then_resumed["root"] / "runs" / "r" / "ray"
    assert list(ray_dir.glob("r-*/worker-*"))
    logged = [p.name for p in ray_dir.rglob("*") if p.name in ("progress.csv", "result.json") or "tfevents" in p.name]
    assert not logged, f"Ray's loggers are on: {logged[:3]}"  # the storage holds every result already


def test_each_ray_trial_is_a_worker_that_reports_every_study_trial_it_ran(killed_then_resumed):
    """A Ray trial is one study worker (README, Ray backend): the rerun's experiment holds ``workers`` Ray trials;
    each ran its study trials one per step, each stamped with its Tune trial id, and its last step says that the
    budget was used up."""
    last_results = tune_last_results(killed_then_resumed["root"])  # the rerun's (the killed driver's may be cut off)
    assert len(last_results) == STUDY["execution"]["workers"]
    before = {t.number for t in killed_then_resumed["before"]}
    ran_by: dict[str, int] = {}
    for t in killed_then_resumed["after"]:
        if t.number not in before:
            ran_by[t.user_attrs["ray_trial"]] = ran_by.get(t.user_attrs["ray_trial"], 0) + 1
    assert set(ran_by) <= set(last_results)
    for trial_id, result in last_results.items():
        assert result["finished"] is True
        assert result["training_iteration"] == ran_by.get(trial_id, 0) + 1  # and one step that found none left


def test_the_rung_rule_prunes_ray_trials_and_only_full_fits_complete(killed_then_resumed):
    on_ray = killed_then_resumed["after"]
    pruned = [t for t in on_ray if t.state == TrialState.PRUNED]
    assert pruned, "6 trials with reduction factor 3 at rung 1 should stop some"
    for t in pruned:
        attrs = t.user_attrs
        assert t.values is None and attrs["epochs"] < 3 and "rung at epoch" in attrs["reason"]
        assert len(attrs["curve"]) == attrs["epochs"]
        assert attrs[f"rung_{attrs['epochs']}"] == attrs["curve"][-1]["val_accuracy"]
    for t in on_ray:
        if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs:
            assert t.user_attrs["epochs"] == 3 and len(t.user_attrs["curve"]) == 3


def test_nas_status_reads_a_ray_study(killed_then_resumed, capsys):
    capsys.readouterr()
    assert main(["status", killed_then_resumed["ray_file"], "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    counts = status["trials"]
    assert counts["complete"] + counts["pruned"] == STUDY["budget"]["trials"] and counts["running"] == 0
    assert status["pareto"] and all(row["epochs"] == 3 for row in status["pareto"])


def test_ctrl_c_ends_a_ray_run_mid_trial_and_the_next_run_marks_that_trial_killed(tmp_path, monkeypatch):
    """Ctrl-C while a Ray worker trains a long trial (its step is not interrupted: Tune ends its actor after its
    grace period, about 10 s; a trial that ends within it is recorded): the driver exits with 130 and the trial
    left RUNNING is marked killed by the next run (here one whose deadline has passed: it trains nothing)."""
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}
    study_file, url = write_study(tmp_path, budget={"trials": 3}, execution={"backend": "ray", "workers": 1},
                                  dataset={**STUDY["dataset"], "samples": 3000},
                                  pruner={"name": "none", "min_epochs": 1, "max_epochs": 400})
    driver = subprocess.Popen([sys.executable, "-m", "nas.cli", "run", study_file], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_training(driver, url)
        os.kill(driver.pid, signal.SIGINT)
        assert driver.wait(timeout=120) == 130, driver.stderr.read()[-2000:]
    finally:
        end_session(driver)
    interrupted = [t.number for t in trials_of(url) if t.state == TrialState.RUNNING]
    assert interrupted, "the interrupted trial stays RUNNING until a run sweeps it"
    monkeypatch.setenv("NAS_CACHE_DIR", env["NAS_CACHE_DIR"])
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(["run", study_file, "--minutes", "0.001"]) == 0
    finally:
        ray.shutdown()
    after = {t.number: t for t in trials_of(url)}
    assert all(after[n].state == TrialState.FAIL and after[n].user_attrs["killed"] for n in interrupted)
    assert all(t.state.is_finished() for t in after.values())


@pytest.mark.parametrize("workers, max_failures", [(1, 1), (2, 0)])
def test_a_killed_ray_worker_loses_only_its_trial_and_the_same_run_finishes_the_budget(tmp_path, monkeypatch,
                                                                                         workers, max_failures):
    """SIGKILL of a Ray worker's process while it trains: the driver fails the trial it held at once (found by the
    worker's Tune trial id; not counted in the budget), and the same run finishes the budget: with
    ``execution.max_failures`` 1 Tune restarts the worker (its sampler drawing anew); with 0 (the default) the other
    worker goes on and the run ends with a warning."""
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}
    study_file, url = write_study(tmp_path, budget={"trials": 3}, sampler={"name": "tpe", "start": "random"},
                                  execution={"backend": "ray", "workers": workers, "max_failures": max_failures},
                                  dataset={**STUDY["dataset"], "samples": 3000},
                                  pruner={"name": "none", "min_epochs": 1, "max_epochs": 40})
    output = tmp_path / "stdout.txt"
    with output.open("w") as stdout:
        driver = subprocess.Popen([sys.executable, "-m", "nas.cli", "run", study_file], cwd=tmp_path, env=env,
                                  stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
    try:
        pid = wait_for_training(driver, url)[0].user_attrs["pid"]
        os.kill(pid, signal.SIGKILL)  # the Ray worker's actor process
        assert driver.wait(timeout=300) == 0, driver.stderr.read()[-2000:]
    finally:
        end_session(driver)
    after = trials_of(url)
    killed = [t for t in after if t.user_attrs.get("killed")]
    assert len(killed) == 1 and killed[0].state == TrialState.FAIL and killed[0].user_attrs["pid"] == pid
    assert killed[0].user_attrs["reason"] == "worker died while the trial was running"
    assert killed[0] == [t for t in after if t.user_attrs["pid"] == pid][-1], "the trial it held when it died"
    others = [t for t in after if t.number != killed[0].number]
    assert len(others) == 3 and all(t.state == TrialState.COMPLETE for t in others)
    assert counted_trials(optuna.load_study(study_name="r", storage=url)) == 3
    replacement = [t for t in others if t.user_attrs["pid"] != pid and t.number > killed[0].number]
    assert replacement, "another worker process took over"
    if max_failures:  # the restarted worker draws anew, not its predecessor's points again
        assert replacement[0].params != [t for t in after if t.user_attrs["pid"] == pid][0].params
    warned = "warning: 1 Ray worker(s) errored outside training" in output.read_text()
    assert warned == (max_failures == 0)


def test_a_simulated_study_runs_on_ray_and_stores_no_weights(tmp_path, monkeypatch, capfd):
    """``--simulate`` on the Ray backend: every trial scored by the synthetic curve, none failed, no weights; and
    no line per trial from Ray about the result files its loggers (off) did not write. Its trials screen first, as
    a local worker's do (``pruner.screen``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    screen = {"train_samples": 50, "epochs": 1}
    study_file, url = write_study(tmp_path, budget={"trials": 4}, pruner={**STUDY["pruner"], "screen": screen})
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(["run", study_file, "--simulate"]) == 0
    finally:
        ray.shutdown()
    assert "result.json" not in capfd.readouterr().err
    trials = trials_of(url)
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.user_attrs.get("simulated") for t in trials if "infeasible" not in t.user_attrs)
    screened = [t for t in trials if "infeasible" not in t.user_attrs and "duplicate_of" not in t.user_attrs]
    assert screened and all(t.user_attrs["screen"]["train_samples"] == 50 and "rung_0" in t.user_attrs
                            for t in screened)
    assert not list(tmp_path.rglob("artifacts")) and not any("weights" in key for t in trials for key in t.user_attrs)


def test_workers_run_on_both_nodes_of_a_two_node_cluster_and_stamp_their_trials(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from nas.execution.ray.driver import RayBackend
    from nas.study.run import run_study

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        node_ids = {node.node_id for node in cluster.list_all_nodes()}
        _, url = write_study(tmp_path)
        config = parse_config({**STUDY, "storage": url, "budget": {"trials": 2},
                               "pruner": {"name": "none", "min_epochs": 1, "max_epochs": 1}})
        study, baseline = run_study(config, url, RayBackend(address=cluster.address))
        assert baseline is None and not ray.is_initialized(), "the driver leaves the cluster it joined"
    finally:
        cluster.shutdown()
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    workers = tune_last_results(tmp_path)  # one worker per node: each node has one CPU, each worker takes one
    assert {result["node"] for result in workers.values()} == node_ids
    assert all(workers[t.user_attrs["ray_trial"]]["node"] == t.user_attrs["node"] for t in trials)


def test_a_two_node_cluster_runs_a_study_stored_in_postgres(tmp_path, monkeypatch, postgres_url):
    """Ray and PostgreSQL together, as a cluster user runs them: the head node (the driver's) has no CPUs for
    trials, so every trial trains on the other node and writes its records to the server from there; one exact
    budget."""
    import uuid

    from ray.cluster_utils import Cluster

    from nas.execution.ray.driver import RayBackend
    from nas.study.run import run_study
    from nas.study.storage import open_storage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    name = f"ray-pg-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        config = parse_config({**STUDY, "name": name, "storage": postgres_url, "budget": {"trials": 4},
                               "pruner": {"name": "none", "min_epochs": 1, "max_epochs": 1}})
        run_study(config, postgres_url, RayBackend(address=cluster.address))
    finally:
        cluster.shutdown()
    storage = open_storage(postgres_url)
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert {t.user_attrs["node"] for t in trials if "infeasible" not in t.user_attrs} == {worker.node_id}
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_an_enqueued_parameter_set_is_trained_on_ray_once(tmp_path, monkeypatch):
    """``enqueue`` on the Ray backend: the first trial a Ray worker reserves is the set, it trains its genome, and
    a resume does not hand it out again."""
    from nas.search.genomes import sample_genome
    from nas.search.presets import resolve_space

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    space_spec = {"preset": "perm-cnn-1d", "reorder": ["none"]}
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    genome = sample_genome(probe, resolve_space(space_spec), (32,), 4).validate()
    study_file, url = write_study(tmp_path, search_space=space_spec, budget={"trials": 2}, enqueue=[probe.params],
                                  pruner={"name": "none", "min_epochs": 1, "max_epochs": 1})
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(["run", study_file]) == 0
        assert main(["run", study_file, "--trials", "3"]) == 0
    finally:
        ray.shutdown()
    trials = trials_of(url)
    assert [t.number for t in trials if t.params == probe.params] == [0]
    assert trials[0].user_attrs["genome_key"] == genome.key() and trials[0].state == TrialState.COMPLETE
    assert trials[0].user_attrs["node"], "trained by a Ray worker"
