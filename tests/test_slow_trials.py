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
from nas.study.records import write
from search_space import Genome

ASHA = {"name": "asha", "min_epochs": 2, "max_epochs": 6, "reduction_factor": 3}


def study_with_first_epochs(tmp_path, seconds: list[float], running: float | None = None) -> optuna.Study:
    """A stored study whose finished trials' first epochs took ``seconds``, and one RUNNING trial's ``running``."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize", "minimize"])
    for s in seconds:
        trial = study.ask()
        write(trial, epoch_s=s)
        study.tell(trial, state=TrialState.PRUNED)
    if running is not None:
        write(study.ask(), epoch_s=running)
    return study


def config(**pruner):
    return parse_config({**TINY_STUDY, "pruner": {**ASHA, **pruner}})


def test_the_default_stops_a_first_epoch_over_five_times_the_median_of_the_others(tmp_path):
    study = study_with_first_epochs(tmp_path, [1.0, 1.0, 3.0], running=1.0)  # median 1.0 over 4 trials
    me = study.ask().number
    assert config().pruner.max_slowdown == 5
    assert slow_verdict(study, config(), me, 5.0) is None  # not more than 5x
    reason, violation = slow_verdict(study, config(), me, 6.0)
    assert reason.startswith("slow: first epoch 6.00 s, 6.0x the median of 4 trials (1.00 s")
    assert violation == pytest.approx(6.0 / 5 - 1)
    reason, violation = slow_verdict(study, config(max_slowdown=2.5), me, 3.0)
    assert "pruner.max_slowdown 2.5" in reason and violation == pytest.approx(3.0 / 2.5 - 1)
    assert slow_verdict(study, config(max_slowdown=None), me, 600.0) is None
    assert slow_verdict(study, config(name="none"), me, 600.0) is None  # 'none' trains every trial in full


def test_it_does_not_judge_before_four_others_nor_on_a_fraction_of_a_second(tmp_path):
    study = study_with_first_epochs(tmp_path, [1.0, 1.0, 1.0], running=None)
    me = study.ask().number
    assert slow_verdict(study, config(), me, 600.0) is None  # 3 others only (the asking trial is not one)
    write(study.ask(), epoch_s=1.0)  # a fourth, still running
    assert slow_verdict(study, config(), me, 600.0) is not None
    (tmp_path / "tiny").mkdir()
    tiny = study_with_first_epochs(tmp_path / "tiny", [0.01] * 6)
    me = tiny.ask().number
    assert slow_verdict(tiny, config(), me, 0.4) is None  # 40x the median, but less than 0.5 s over it
    assert slow_verdict(tiny, config(), me, 0.52) is not None


def test_a_search_stops_the_slow_trials_after_one_epoch_and_tells_the_sampler(workdir):
    data = {"name": "synthetic", "shape": [64], "classes": 4, "samples": 40000}
    study_file = write_study(workdir / "s.yaml", dataset=data, pruner=ASHA, budget={"trials": 24},
                             search_space={"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2},
                                           "channels": [4, 64], "input_permutations": [1]},
                             sampler={"name": "tpe", "seed": 0})
    assert main(["run", str(study_file), "--simulate"]) == 0
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny/study.db").get_trials()
    train_samples = len(load_dataset(data).y_train)
    seconds = {t.number: simulated_epoch_s(Genome.from_json(t.user_attrs["genome"]), train_samples) for t in trials}
    slow = [t for t in trials if "slow:" in (t.user_attrs.get("reason") or "")]
    assert slow, "no trial was slow: the test's space no longer spreads epoch times"
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]  # a twin's copy trains nothing

    def over_the_limit(t) -> bool:  # the rule's arithmetic, written again; one worker: the lower numbers are the others
        before = [s.user_attrs["epoch_s"] for s in trained if s.number < t.number]
        median = statistics.median(before) if before else 0.0
        return len(before) >= 4 and t.user_attrs["epoch_s"] > max(5 * median, median + 0.5)

    start = [t for t in trained if "fixed_params" in t.system_attrs]  # the spread start: chosen, never judged
    assert len(start) == 6 and any(over_the_limit(t) for t in start), "the start no longer holds a slow genome"
    for t in trained:
        epoch_s = t.user_attrs["epoch_s"]
        assert epoch_s == pytest.approx(seconds[t.number])  # every trial records its first epoch's seconds
        drawn = "zoo" not in t.user_attrs and t not in start
        assert (t in slow) == (drawn and over_the_limit(t)), t.number
        if t in slow:
            before = [s.user_attrs["epoch_s"] for s in trained if s.number < t.number]
            assert t.state == TrialState.PRUNED and t.user_attrs["epochs"] == 1 and len(t.user_attrs["curve"]) == 1
            assert t.constraints == {"0": pytest.approx(epoch_s / statistics.median(before) / 5 - 1)}
        else:
            assert all(v <= 0 for v in t.constraints.values())  # what TPE and NSGA-II read as feasible
