"""``nas run`` end to end on tiny synthetic data: real Optuna storage, real training, real worker processes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import conftest
from nas.cli import main
from nas.study.summary import trained

BASE = {
    "name": "s",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300},
    "search_space": {"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2}, "channels": [8, 16]},
    "constraints": {"max_params": 20000},
    "sampler": {"name": "nsga2", "seed": 0},
    # max_slowdown off: every stop here is the rung rule's (the slow-trial rule: tests/test_slow_trials.py)
    "pruner": {"name": "asha", "min_epochs": 1, "max_epochs": 3, "reduction_factor": 3, "max_slowdown": None},
    "training": {"lr": 0.01, "batch_size": 64},
    "budget": {"trials": 9},
    "baseline": {"trials": 2},
    "warm_start": ["mnist1d-cnn"],
    "execution": {"workers": 1},
}


def write_study(path, **changes) -> str:
    return str(conftest.write_study(path, BASE, **changes))


URL = "sqlite:///runs/s/study.db"


def trials_of(name: str, url: str = URL) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def test_run_prunes_by_rung_records_and_resumes(workdir, capsys):
    study_file = write_study(workdir / "s.yaml")
    assert main(["run", study_file]) == 0
    trials = trials_of("s")
    assert len(trials) == 9
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert trials[0].user_attrs["zoo"] == "mnist1d-cnn"
    for t in trials:
        attrs = t.user_attrs
        assert "genome" in attrs and "genome_key" in attrs and attrs["family"]
        assert t.intermediate_values == {}  # README: none reported, so TPE ranks a PRUNED trial below every complete
        if t.state == TrialState.PRUNED:
            assert attrs["epochs"] < 3 and "rung at epoch" in attrs["reason"] and t.values is None
            assert attrs[f"rung_{attrs['epochs']}"] == attrs["curve"][-1]["val_accuracy"]
        if trained(t):
            assert attrs["epochs"] == 3 and len(attrs["curve"]) == 3
            assert t.values == [attrs["val_accuracy"], attrs["params"]]
            assert 0.0 <= attrs["test_accuracy"] <= 1.0 and attrs["weights_artifact"]
    # resume: the finished trials stay and count toward the larger budget
    before = {t.number: t.values for t in trials}
    assert main(["run", study_file, "--trials", "11"]) == 0
    after = trials_of("s")
    assert len(after) == 11 and {t.number: t.values for t in after if t.number in before} == before
    capsys.readouterr()
    assert main(["status", study_file, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    counts = status["trials"]
    assert counts["complete"] + counts["pruned"] + counts["failed"] + counts["infeasible"] == 11
    assert status["pareto"] and {"number", "val_accuracy", "test_accuracy", "params", "epochs"} <= set(status["pareto"][0])
    assert status["baseline"] and status["baseline_study"].startswith("baseline-synthetic")


@pytest.mark.parametrize("cost, cap", [("params", 600), ("flops", 20_000)])
def test_infeasible_genomes_are_recorded_but_never_trained(workdir, cost, cap):
    study_file = write_study(workdir / "s.yaml", constraints={f"max_{cost}": cap}, baseline={"trials": 0},
                             pruner={"name": "none", "min_epochs": 1, "max_epochs": 1}, budget={"trials": 6},
                             sampler={"name": "nsga2", "seed": 0, "start": "random"})  # the spread start is feasible
    assert main(["run", study_file]) == 0
    infeasible = [t for t in trials_of("s") if "infeasible" in t.user_attrs]
    assert infeasible, f"a {cap:,} {cost} cap should reject some genomes (the warm start: 4,354 params, 24,775 flops)"
    for t in infeasible:
        assert "curve" not in t.user_attrs and t.values[0] == 0.0
        assert f"exceed max_{cost} {cap:,}" in t.user_attrs["reason"] and t.user_attrs[cost] > cap
    # what optuna-dashboard and the optuna CLI label the objectives with (else "0" and "1")
    assert optuna.load_study(study_name="s", storage="sqlite:///runs/s/study.db").metric_names == \
        ["val_accuracy", "params"]


def test_a_repeated_genome_is_not_trained_again(workdir):
    fixed = {"preset": "perm-cnn-1d", "stages": 1, "channels": [8], "kernel": [3], "conv_type": ["conv"],
             "input_permutations": [1], "groups": [1], "stride": [1], "head": ["gap"], "norm": ["none"],
             "act": ["relu"], "dropout": 0.0, "reshape_channels": [4], "permute_first_branch": [False],
             "permute_between": [False], "downsample": ["stride"], "reorder": ["none"]}
    study_file = write_study(workdir / "s.yaml", search_space=fixed, baseline={"trials": 0}, warm_start=[],
                             pruner={"name": "none", "min_epochs": 1, "max_epochs": 1}, budget={"trials": 3},
                             sampler={"name": "random", "seed": 0})
    assert main(["run", study_file]) == 0
    trials = trials_of("s")
    assert len({t.user_attrs["genome_key"] for t in trials}) == 1
    copies = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(copies) == 2 and all(t.values == trials[0].values for t in copies)


def test_two_worker_processes_share_one_exact_budget(workdir):
    study_file = write_study(workdir / "s.yaml", execution={"workers": 2}, budget={"trials": 6},
                             baseline={"trials": 0}, pruner={"name": "none", "min_epochs": 1, "max_epochs": 1})
    assert main(["run", study_file]) == 0
    trials = trials_of("s")
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))
    assert all(t.state.is_finished() for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    # each worker trains on its share of the cores (oversubscribed torch threads silently halve the speed)
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert {point["threads"] for t in trials for point in t.user_attrs["curve"]} == {expected}


@pytest.mark.parametrize("changes,needle", [
    ({"sampler": {"name": "cmaes"}}, "sampler.name"),
    ({"search_space": {"preset": "resnet"}}, "search_space.preset"),
    ({"dataset": {"name": "cifar10", "path": "no/such/dir"}}, "no/such/dir"),
    ({"storage": "redis://localhost"}, "storage"),
])
def test_bad_study_exits_2_with_one_line(workdir, capsys, changes, needle):
    study_file = write_study(workdir / "s.yaml", **changes)
    assert main(["run", study_file]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    stored = Path("runs/s/study.db")  # before any trial: no storage yet, or one without trials
    assert not stored.exists() or all(not s.n_trials for s in optuna.get_all_study_summaries(URL))


def test_status_of_a_missing_study_exits_2(workdir, capsys):
    assert main(["status", "nosuch", "--storage", f"sqlite:///{workdir}/none.db"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_resumed_random_search_proposes_new_configurations(workdir):
    """A resumed run seeds its sampler from the stored trials: the first run's points are not drawn again."""
    study_file = str(conftest.write_study(workdir / "tiny.yaml"))  # random sampler, 4 trials
    assert main(["run", study_file]) == 0
    assert main(["run", study_file, "--trials", "8"]) == 0
    trials = trials_of("tiny", "sqlite:///runs/tiny/study.db")
    assert len(trials) == 8 and not any("duplicate_of" in t.user_attrs for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 8


@pytest.mark.parametrize("changes, field", [
    ({"pruner": {"name": "none", "min_epochs": 2, "max_epochs": 2}}, "pruner.min_epochs"),
    ({"training": {"batch_size": 16}}, "training.batch_size"),
    ({"search_space": {**conftest.TINY_STUDY["search_space"], "stages": 2}}, "search_space.stages"),
    ({"search_space": {"preset": "perm-cnn-1d"}}, "search_space.channels"),
    ({"dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300}}, "dataset.samples"),
])
def test_resuming_with_another_definition_of_a_trial_exits_2_naming_the_field(workdir, capsys, changes, field):
    study_file = str(conftest.write_study(workdir / "tiny.yaml", budget={"trials": 2}))
    assert main(["run", study_file]) == 0
    before = trials_of("tiny", "sqlite:///runs/tiny/study.db")
    conftest.write_study(workdir / "tiny.yaml", budget={"trials": 4}, **changes)
    capsys.readouterr()
    assert main(["run", study_file]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"nas: error: {field}: study 'tiny'") and "\n" not in error
    assert [t.number for t in trials_of("tiny", "sqlite:///runs/tiny/study.db")] == [t.number for t in before]
    conftest.write_study(workdir / "tiny.yaml", budget={"trials": 3}, execution={"workers": 1})  # budget may grow
    assert main(["run", study_file]) == 0


def test_nas_baseline_writes_the_baseline_nas_run_reads(workdir, capsys):
    study_file = write_study(workdir / "s.yaml", warm_start=[], budget={"trials": 2},
                             pruner={"name": "none", "min_epochs": 1, "max_epochs": 1})
    assert main(["baseline", study_file]) == 0
    baseline_name = optuna.load_study(study_name="s", storage="sqlite:///runs/s/study.db").user_attrs["baseline_study"]
    tuned = trials_of(baseline_name)
    assert len(tuned) == 2 and {"lr", "weight_decay", "epochs", "depth"} <= set(tuned[-1].params)
    drawn = tuned[-1].distributions  # README: lr in [x/10, 3x] around the fixed 0.01, decay in [1e-6, 1e-2], 1x or 2x
    assert drawn["lr"] == optuna.distributions.FloatDistribution(0.001, 0.03, log=True)
    assert drawn["weight_decay"] == optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True)
    assert drawn["epochs"] == optuna.distributions.CategoricalDistribution([1, 2])
    capsys.readouterr()
    assert main(["run", study_file]) == 0
    assert "dense baseline" in capsys.readouterr().out and len(trials_of(baseline_name)) == 2  # not tuned again
    assert main(["status", study_file, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline_study"] == baseline_name


def test_nas_baseline_trials_keeps_the_baselines_own_limit_and_warm_starts(workdir):
    """``--trials`` changes how many trials, not which baseline: the one ``nas run`` reads (same name, limit and
    warm starts)."""
    from nas.study.config import load_config
    from nas.study.plan import baseline_config

    study_file = write_study(workdir / "s.yaml", budget={"trials": 1}, baseline={"trials": 3, "max_params": 3000,
                                                                                 "warm_start": []},
                             pruner={"name": "none", "min_epochs": 1, "max_epochs": 1})
    assert main(["baseline", study_file, "--trials", "1"]) == 0
    linked = optuna.load_study(study_name="s", storage=URL).user_attrs["baseline_study"]
    assert linked == baseline_config(load_config(study_file)).name and "-p3000-" in linked
    (tuned,) = trials_of(linked)
    assert "zoo" not in tuned.user_attrs and tuned.user_attrs["params"] <= 3000


def test_a_study_stored_before_a_config_field_existed_resumes(workdir):
    """A stored config lacks fields added since (here ``pruner.floor``): they count at their defaults."""
    study_file = str(conftest.write_study(workdir / "tiny.yaml", budget={"trials": 1}))
    assert main(["run", study_file]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny/study.db")
    older = study.user_attrs["config"]
    del older["pruner"]["floor"]
    study.set_user_attr("config", older)
    assert main(["run", study_file, "--trials", "2"]) == 0
    assert len(trials_of("tiny", "sqlite:///runs/tiny/study.db")) == 2


def a_parameter_set(seed: int = 3) -> tuple[dict, str]:
    """A complete parameter set of the test space (as a sampler would draw it) and the genome key it draws."""
    from nas.search.genomes import sample_genome
    from nas.search.presets import resolve_space

    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    space = resolve_space({**BASE["search_space"], "reorder": ["none"]})
    genome = sample_genome(probe, space, (32,), 4).validate()
    return dict(probe.params), genome.key()


def test_an_enqueued_parameter_set_is_tried_after_the_warm_start_and_modelled_as_a_draw(workdir):
    params, key = a_parameter_set()
    study_file = write_study(workdir / "s.yaml", search_space={**BASE["search_space"], "reorder": ["none"]},
                             budget={"trials": 4}, enqueue=[params])
    assert main(["run", study_file]) == 0
    baseline = optuna.load_study(study_name=optuna.load_study(study_name="s", storage=URL).user_attrs[
        "baseline_study"], storage=URL)
    assert len(baseline.trials) == 2  # the dense baseline ran, and none of its trials took the search's set
    assert not [t.number for t in baseline.trials if "fixed_params" in t.system_attrs]
    trials = trials_of("s")
    assert trials[0].user_attrs["zoo"] == "mnist1d-cnn"  # the zoo warm start keeps its place
    assert trials[1].params == params and trials[1].user_attrs["genome_key"] == key
    assert "zoo" not in trials[1].user_attrs  # a draw like the sampler's own: TPE and NSGA-II model it
    assert main(["run", study_file, "--trials", "6"]) == 0  # a resume does not enqueue it again
    assert [t.number for t in trials_of("s") if t.params == params] == [1]


@pytest.mark.parametrize("change,needle", [
    ({"s9_type": "conv"}, "enqueue[0]: parameter 's9_type' is not drawn"),  # a parameter the space does not draw
    ({"stages": 7}, "enqueue[0]: "),  # a value outside its range
    ({"s1_channels": None}, "enqueue[0]: The value of the parameter 's1_channels' is not found"),  # incomplete
])
def test_a_bad_enqueued_parameter_set_exits_2_with_one_line(workdir, capsys, change, needle):
    params, _ = a_parameter_set()
    changed = {k: v for k, v in {**params, **change}.items() if v is not None}
    study_file = write_study(workdir / "s.yaml", search_space={**BASE["search_space"], "reorder": ["none"]},
                             baseline={"trials": 0}, enqueue=[changed])
    assert main(["run", study_file]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    stored = Path("runs/s/study.db")  # before any trial: no storage yet, or one without trials
    assert not stored.exists() or all(not s.n_trials for s in optuna.get_all_study_summaries(URL))
