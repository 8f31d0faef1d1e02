"""``pruner.screen``: a first rung on a fixed part of the training data, end to end with real training."""
from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

import conftest
from evaluators.datasets import load_dataset, training_part
from evaluators.errors import DatasetError
from nas.cli import main
from nas.study.config import Pruner

SAMPLES, VAL_FRACTION = 600, 0.2
TRAIN = int(SAMPLES * (1 - VAL_FRACTION) * (1 - VAL_FRACTION))  # synthetic data carves test, then validation
STUDY = {
    "name": "s",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": SAMPLES},
    "search_space": {"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2}, "channels": [8, 16]},
    "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    "sampler": {"name": "random", "seed": 0},
    # the screen takes the pruner's reduction factor (2); no rung in the full fit, and no slow-trial stop
    "pruner": {"name": "asha", "min_epochs": 3, "max_epochs": 3, "reduction_factor": 2, "max_slowdown": None,
               "screen": {"train_samples": 96, "epochs": 1}},
    "training": {"lr": 0.01, "batch_size": 32},
    "budget": {"trials": 10},
    "baseline": {"trials": 0},
    "execution": {"workers": 1},
}


def run(folder, **changes) -> list[optuna.trial.FrozenTrial]:
    """Runs the study with ``changes`` in its own folder (storage beside it); returns its trials."""
    study_file, url = conftest.study_beside_storage(folder, STUDY, **changes)
    assert main(["run", str(study_file)]) == 0
    return optuna.load_study(study_name="s", storage=url).get_trials()


def trained(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that trained itself: not an untrained infeasible genome, not a copy of its twin."""
    return "infeasible" not in trial.user_attrs and "duplicate_of" not in trial.user_attrs


def test_only_the_top_screens_train_in_full_and_their_results_match_an_unscreened_study(workdir, capsys):
    screened = [t for t in run(workdir / "screened") if trained(t)]
    capsys.readouterr()
    assert main(["status", str(workdir / "screened" / "s.yaml"), "--json"]) == 0
    stopped = sum(t.state == TrialState.PRUNED for t in screened)  # `nas status` counts what the screen did
    assert json.loads(capsys.readouterr().out)["screen"] == {"screened": len(screened), "stopped": stopped}
    plain = {t.number: t for t in run(workdir / "plain", pruner={"name": "asha", "min_epochs": 3, "max_epochs": 3})}

    checked = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0}
    screens = []  # the screen accuracies so far, in trial order (one worker: each decides after the ones before)
    for t in screened:
        attrs = t.user_attrs
        assert attrs["screen"]["train_samples"] == 96 and attrs["screen"]["epochs"] == 1
        screens.append(attrs["rung_0"])
        better = sum(accuracy > attrs["rung_0"] for accuracy in screens)
        level = sum(accuracy == attrs["rung_0"] for accuracy in screens)  # itself included
        keep = math.ceil(len(screens) / 2)  # the pruner's factor 2, one objective: the top half goes on
        if t.state == TrialState.PRUNED:
            assert attrs["epochs"] == 0 and "curve" not in attrs and t.values is None
            assert attrs["reason"].startswith(f"screen: not in the top 1/2 of {len(screens)} trials")
            assert better + level > keep  # not kept whatever the order of ties
            checked[t.state] += better >= keep  # dropped by any order of ties
        else:  # the full fit: all 3 epochs on all the training data, from a fresh model
            assert better < keep
            checked[t.state] += better + level <= keep
            assert attrs["epochs"] == 3 and len(attrs["curve"]) == 3
            # the same genome and seed trained without a screen gives the same result: not the screen's model
            # continued, not the screen's part of the data
            assert plain[t.number].user_attrs["genome_key"] == attrs["genome_key"]
            assert plain[t.number].values == t.values and "screen" not in plain[t.number].user_attrs
    assert min(checked.values()) >= 1, checked  # both verdicts seen where ties cannot decide them


def test_the_screens_part_is_stratified_and_the_same_for_every_trial(workdir):
    data = load_dataset(STUDY["dataset"])
    part = training_part(data, 96, "pruner.screen.train_samples")
    assert torch.equal(part.x_train, training_part(data, 96, "x").x_train)
    assert len(part.y_train) == 96 and torch.equal(part.x_val, data.x_val) and torch.equal(part.x_test, data.x_test)
    rows = {tuple(row.tolist()) for row in data.x_train}
    assert all(tuple(row.tolist()) in rows for row in part.x_train)  # a part of the training split, nothing else
    shares = torch.bincount(data.y_train, minlength=4) * 96 / len(data.y_train)
    assert (torch.bincount(part.y_train, minlength=4) - shares).abs().max() < 1  # each class its share
    with pytest.raises(DatasetError, match="pruner.screen.train_samples: 384 is not fewer than the 384"):
        training_part(data, TRAIN, "pruner.screen.train_samples")


def test_a_trial_whose_screen_cannot_finish_fails_with_the_screens_reason(workdir):
    trials = run(workdir, training={"lr": 0.01, "batch_size": 32, "trial_timeout_s": 1e-4}, budget={"trials": 2})
    for t in (t for t in trials if trained(t)):
        assert t.state == TrialState.FAIL and t.user_attrs["reason"].startswith("screen: ")
        assert "past its 0.0001 s limit" in t.user_attrs["reason"] and "curve" not in t.user_attrs


@pytest.mark.parametrize("pruner,needle", [
    ({"name": "none", "screen": {"train_samples": 64, "epochs": 1}}, "pruner.screen"),
    ({"name": "asha", "screen": {"train_samples": 64}}, "pruner.screen.epochs"),
    ({"name": "asha", "min_epochs": 3, "max_epochs": 3, "screen": {"train_samples": TRAIN, "epochs": 1}},
     "pruner.screen.train_samples"),
])
def test_a_screen_that_cannot_work_exits_2_with_one_line_naming_its_field(workdir, capsys, pruner, needle):
    """Before the baseline trains or the study is stored, with worker processes: the corrected file then runs."""
    changes = {"baseline": {"trials": 2}, "execution": {"workers": 2}, "budget": {"trials": 2}}
    study_file, url = conftest.study_beside_storage(workdir, STUDY, pruner=pruner, **changes)
    assert main(["run", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err
    assert not optuna.get_all_study_summaries(url)
    conftest.study_beside_storage(workdir, STUDY, **changes)
    assert main(["run", str(study_file)]) == 0


def test_a_screen_takes_its_own_reduction_factor_or_the_pruners():
    pruner = {"name": "asha", "reduction_factor": 3, "screen": {"train_samples": 10, "epochs": 1}}
    assert Pruner(**pruner).screen_factor == 3
    assert Pruner(**{**pruner, "screen": {"train_samples": 10, "epochs": 1, "reduction_factor": 5}}).screen_factor == 5


def test_adding_a_screen_to_a_stored_study_is_refused_naming_it(workdir, capsys):
    """A stored study's trials were ranked without a screen: resuming with one would mix two definitions."""
    unscreened = {"name": "asha", "min_epochs": 3, "max_epochs": 3, "reduction_factor": 2}
    study_file, url = conftest.study_beside_storage(workdir, STUDY, pruner=unscreened, budget={"trials": 2})
    assert main(["run", str(study_file)]) == 0
    conftest.study_beside_storage(workdir, STUDY, budget={"trials": 4})
    capsys.readouterr()
    assert main(["run", str(study_file)]) == 2
    assert capsys.readouterr().err.startswith("nas: error: pruner.screen: study 's'")
    assert len(optuna.load_study(study_name="s", storage=url).get_trials()) == 2
