"""Twins (same genome, same training values) are trained once: copied when the first finished, pruned when it was
pruned, waited for while it runs; whatever parameters drew the genome. Real storage, real training."""
from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

import conftest
from nas.cli import main
from nas.execution.trial import prepare_trial, sample_trial, trial_context
from nas.execution.twins import twin_key
from nas.study.config import parse_config
from nas.study.plan import RunPlan, create_study, reserve_trial
from nas.study.records import write
from nas.study.storage import record_violation

# One genome only: every choice fixed, except ``groups``, whose two offers both clamp to 2 (2 input channels).
ONE_GENOME = {"preset": "perm-cnn-1d", "stages": 1, "channels": [8], "kernel": [3], "conv_type": ["conv"],
              "input_permutations": [1], "groups": [2, 4], "pattern": ["none"], "stride": [1], "head": ["gap"],
              "norm": ["none"], "act": ["relu"], "dropout": 0.0, "reshape_channels": [2],
              "permute_first_branch": [False], "permute_between": [False], "downsample": ["stride"],
              "reorder": ["none"]}
URL = "sqlite:///runs/tiny/study.db"


def trials() -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=URL).get_trials()


def test_parameters_that_build_one_genome_train_it_once_and_copies_export_with_its_seed(workdir, capsys):
    study_file = conftest.write_study(workdir / "tiny.yaml", search_space=ONE_GENOME, budget={"trials": 6})
    assert main(["run", str(study_file)]) == 0
    done = trials()
    assert {t.params["s1_groups"] for t in done} == {2, 4}, "the test needs both offers drawn"
    trained = [t for t in done if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 1 and len({t.user_attrs["genome_key"] for t in done}) == 1
    original = trained[0]
    copies = [t for t in done if t.user_attrs.get("duplicate_of") == original.number]
    assert len(copies) == 5 and all(t.values == original.values for t in copies)
    assert all(t.user_attrs["seed"] == original.user_attrs["seed"] == original.number for t in copies)
    copy = copies[-1]
    assert main(["export", str(study_file), "--trial", str(copy.number), "--out", str(workdir / "ex")]) == 0
    manifest = json.loads((workdir / "ex" / "manifest.json").read_text())
    assert manifest["trial"] == copy.number and manifest["trained_by_trial"] == original.number
    assert manifest["seed"] == original.user_attrs["seed"] != copy.number


def test_a_twin_of_a_running_trial_waits_for_it_instead_of_training(workdir):
    study_file = conftest.write_study(workdir / "tiny.yaml", search_space={**ONE_GENOME, "groups": [1]},
                                      budget={"trials": 4}, execution={"workers": 2},
                                      pruner={"name": "none", "min_epochs": 4, "max_epochs": 4})
    assert main(["run", str(study_file)]) == 0
    done = trials()
    assert all(t.state == TrialState.COMPLETE for t in done)
    assert len([t for t in done if "duplicate_of" not in t.user_attrs]) == 1


def pruned_trial_and_its_twin(curve: list, reason: str, violation: float | None = None) -> tuple:
    """Trial 0 of a one-genome study ended PRUNED after 1 epoch with ``curve`` and ``reason`` (and the constraint
    ``violation``), then trial 1, which draws the same genome, settled against it: (trial 0, its state, trial 1)."""
    config = parse_config({**conftest.TINY_STUDY, "search_space": ONE_GENOME, "storage": URL})
    study = create_study(config, URL)
    plan = RunPlan(config, URL)
    ctx = trial_context(plan, study)
    first = reserve_trial(study, plan)
    prepared = sample_trial(ctx, first)
    write(first, twin_key=twin_key(prepared.genome.key(), prepared.train), curve=curve, epochs=1, reason=reason)
    if violation is not None:
        record_violation(first, violation)
    study.tell(first, state=TrialState.PRUNED)
    second = reserve_trial(study, plan)
    state = prepare_trial(ctx, second)
    return first, state, study.get_trials()[second.number]


def test_a_twin_of_a_pruned_trial_ends_pruned_without_training(workdir):
    curve = [{"epoch": 1, "val_accuracy": 0.25}]
    first, state, again = pruned_trial_and_its_twin(curve, "rung at epoch 1: ...")
    assert state == TrialState.PRUNED
    assert again.state == TrialState.PRUNED and again.user_attrs["duplicate_of"] == first.number
    assert again.user_attrs["curve"] == curve and "which the rung rule stopped after 1 epochs" in again.user_attrs["reason"]


def test_a_twin_of_a_trial_stopped_as_slow_is_slow_to_its_sampler_too(workdir):
    """The copy carries the constraint violation the slow-trial rule gave the trial it copies (TPE and NSGA-II read
    ``constraints``), and its reason names that rule."""
    _, state, again = pruned_trial_and_its_twin(
        [{"epoch": 1}], "slow: first epoch 9.00 s, 9.0x the median of 4 trials (1.00 s; pruner.max_slowdown 5)", 0.8)
    assert state == TrialState.PRUNED
    assert again.constraints == {"0": 0.8} and "which the slow-trial rule stopped after 1 epochs" in \
        again.user_attrs["reason"]


def test_a_twin_whose_worker_died_is_swept_and_the_waiting_trial_trains(workdir):
    """Waiting on a dead worker's trial would hang the run: the waiter sweeps it and trains the genome itself."""
    import subprocess
    import sys

    config = parse_config({**conftest.TINY_STUDY, "search_space": ONE_GENOME, "storage": URL})
    study = create_study(config, URL)
    plan = RunPlan(config, URL)
    ctx = trial_context(plan, study)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    first = reserve_trial(study, plan)
    prepared = sample_trial(ctx, first)
    write(first, twin_key=twin_key(prepared.genome.key(), prepared.train), pid=int(dead.stdout), pid_start=None)
    second = reserve_trial(study, plan)
    outcome = prepare_trial(ctx, second)
    assert not isinstance(outcome, TrialState) and outcome.genome.key() == prepared.genome.key()
    trials = study.get_trials()
    assert trials[first.number].state == TrialState.FAIL and trials[first.number].user_attrs["killed"]
    assert trials[second.number].user_attrs["twin_key"] == trials[first.number].user_attrs["twin_key"]
