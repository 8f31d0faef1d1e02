"""``pruner.max_slowdown``: a trial whose first epoch is many times the study's median stops there, and its sampler
is told it broke a constraint; real SQLite storage, and a real search on simulated curves (whose epoch seconds come
from the genome's multiply-adds, so which trials are slow is known beforehand)."""
from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_STUDY, write_study
from evaluators.datasets import load_dataset
from evaluators.simulated import simulated_epoch_s
from nas.cli import main
from nas.scheduling.rungs import slow_verdict
from nas.study.config import parse_config
from nas.study.plan import resume_conflict
from nas.study.records import write
from search_space import Genome

ASHA = {"name": "asha", "min_epochs": 2, "max_epochs": 6, "reduction_factor": 3}


CPU = "cpu x1"  # where the first epochs below ran (device and threads)


def study_with_first_epochs(tmp_path, seconds: list[float], running: float | None = None) -> optuna.Study:
    """A stored study whose finished trials' first epochs took ``seconds``, and one RUNNING trial's ``running``."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize", "minimize"])
    for s in seconds:
        trial = study.ask()
        write(trial, epoch_s=s, epoch_on=CPU)
        study.tell(trial, state=TrialState.PRUNED)
    if running is not None:
        write(study.ask(), epoch_s=running, epoch_on=CPU)
    return study


def config(**pruner):
    return parse_config({**TINY_STUDY, "pruner": {**ASHA, **pruner}})


def test_the_default_stops_a_first_epoch_over_five_times_the_median_of_the_others(tmp_path):
    study = study_with_first_epochs(tmp_path, [1.0, 1.0, 3.0], running=1.0)  # median 1.0 over 4 trials
    me = study.ask().number
    assert config().pruner.max_slowdown == 5
    assert slow_verdict(study, config(), me, 5.0, CPU) is None  # not more than 5x
    reason, violation = slow_verdict(study, config(), me, 6.0, CPU)
    assert reason.startswith("slow: first epoch 6.00 s, 6.0x the median of 4 trials (1.00 s")
    assert violation == pytest.approx(6.0 / 5 - 1)
    reason, violation = slow_verdict(study, config(max_slowdown=2.5), me, 3.0, CPU)
    assert "pruner.max_slowdown 2.5" in reason and violation == pytest.approx(3.0 / 2.5 - 1)
    assert slow_verdict(study, config(max_slowdown=None), me, 600.0, CPU) is None
    assert slow_verdict(study, config(name="none"), me, 600.0, CPU) is None  # 'none' trains every trial in full


def test_it_does_not_judge_before_four_others_nor_on_a_fraction_of_a_second(tmp_path):
    study = study_with_first_epochs(tmp_path, [1.0, 1.0, 1.0], running=None)
    me = study.ask().number
    assert slow_verdict(study, config(), me, 600.0, CPU) is None  # 3 others only (the asking trial is not one)
    write(study.ask(), epoch_s=1.0, epoch_on=CPU)  # a fourth, still running
    assert slow_verdict(study, config(), me, 600.0, CPU) is not None
    (tmp_path / "tiny").mkdir()
    tiny = study_with_first_epochs(tmp_path / "tiny", [0.01] * 6)
    me = tiny.ask().number
    assert slow_verdict(tiny, config(), me, 0.4, CPU) is None  # 40x the median, but less than 0.5 s over it
    assert slow_verdict(tiny, config(), me, 0.52, CPU) is not None


def test_only_first_epochs_on_the_same_device_and_threads_are_compared(tmp_path):
    """A study resumed with other workers (threads) or on another device: its earlier epochs say nothing here."""
    study = study_with_first_epochs(tmp_path, [1.0] * 6)
    for _ in range(3):
        write(study.ask(), epoch_s=0.01, epoch_on="cuda x1")
    me = study.ask().number
    assert slow_verdict(study, config(), me, 6.0, CPU) is not None
    assert slow_verdict(study, config(), me, 6.0, "cpu x2") is None  # no first epoch on 2 threads yet
    assert slow_verdict(study, config(), me, 6.0, "cuda x1") is None  # 3 on the GPU: too few to judge
    write(study.ask(), epoch_s=0.01, epoch_on="cuda x1")
    assert slow_verdict(study, config(), me, 0.6, "cuda x1") is not None


def test_max_slowdown_may_change_on_resume(tmp_path):
    """Which draws train past epoch 1 is not what a rung or a full-budget result means: a study stored without
    the field (or with it) resumes with any value, where another pruner change is refused."""
    stored = config().model_dump(mode="json")
    del stored["pruner"]["max_slowdown"]  # a study stored before the field existed
    assert resume_conflict(stored, config(max_slowdown=None)) is None
    assert resume_conflict(stored, config(max_slowdown=8)) is None
    assert resume_conflict(stored, config(reduction_factor=2))[0] == "pruner.reduction_factor"


DATA = {"name": "synthetic", "shape": [64], "classes": 4, "samples": 40000}
SPACE = {"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2}, "channels": [4, 64], "input_permutations": [1]}


def simulated_search(workdir, pruner: dict) -> list[optuna.trial.FrozenTrial]:
    """24 trials of a one-worker TPE search on simulated curves: first epochs from 0.01 s to over 10 s."""
    study_file = write_study(workdir / "s.yaml", dataset=DATA, pruner=pruner, budget={"trials": 24},
                             search_space=SPACE, sampler={"name": "tpe", "seed": 0})
    assert main(["run", str(study_file), "--simulate"]) == 0
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny/study.db").get_trials()
    assert all("infeasible" not in t.user_attrs for t in trials)  # no size limit here: every trial trains
    return [t for t in trials if "duplicate_of" not in t.user_attrs]  # a twin's copy trains nothing


def over_the_limit(t, trained) -> bool:
    """The rule's arithmetic, written again; one worker, so the others are the lower numbers."""
    before = [s.user_attrs["epoch_s"] for s in trained if s.number < t.number]
    median = statistics.median(before) if before else 0.0
    return len(before) >= 4 and t.user_attrs["epoch_s"] > max(5 * median, median + 0.5)


def test_a_search_stops_the_slow_trials_after_one_epoch_and_tells_the_sampler(workdir):
    trained = simulated_search(workdir, ASHA)
    train_samples = len(load_dataset(DATA).y_train)
    slow = [t for t in trained if "slow:" in (t.user_attrs.get("reason") or "")]
    assert slow, "no trial was slow: the test's space no longer spreads epoch times"
    start = [t for t in trained if "fixed_params" in t.system_attrs]  # the spread start: chosen, never judged
    assert len(start) == 6 and any(over_the_limit(t, trained) for t in start), "no slow genome in the start"
    for t in trained:
        epoch_s = t.user_attrs["epoch_s"]  # every trial records its first epoch's seconds and where it ran
        assert epoch_s == pytest.approx(simulated_epoch_s(Genome.from_json(t.user_attrs["genome"]), train_samples))
        assert t.user_attrs["epoch_on"] == "cpu x0"  # simulated: no threads
        drawn = "zoo" not in t.user_attrs and t not in start
        assert (t in slow) == (drawn and over_the_limit(t, trained)), t.number
        if t in slow:
            before = [s.user_attrs["epoch_s"] for s in trained if s.number < t.number]
            assert t.state == TrialState.PRUNED and t.user_attrs["epochs"] == 1 and len(t.user_attrs["curve"]) == 1
            assert t.constraints == {"0": pytest.approx(epoch_s / statistics.median(before) / 5 - 1)}
        else:
            assert all(v <= 0 for v in t.constraints.values())  # what TPE and NSGA-II read as feasible


def test_a_trial_with_one_epoch_to_train_is_not_stopped_after_it(workdir):
    """Its fit is done by then: stopping it would throw the result away, not save time."""
    trained = simulated_search(workdir, {**ASHA, "min_epochs": 1, "max_epochs": 1})
    start = [t for t in trained if "fixed_params" in t.system_attrs]
    assert any(over_the_limit(t, trained) for t in trained if t not in start)  # slow ones were drawn
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 1 for t in trained)
