"""``pruner.screen``: a first rung on a fixed part of the training data, end to end with real training."""
from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

import conftest
from nas.cli import main

SAMPLES, VAL_FRACTION = 400, 0.2
TRAIN = int(SAMPLES * (1 - VAL_FRACTION) * (1 - VAL_FRACTION))  # synthetic data carves test, then validation
STUDY = {
    "name": "s",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": SAMPLES},
    "search_space": {"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2}, "channels": [8, 16]},
    "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "asha", "min_epochs": 3, "max_epochs": 3,
               "screen": {"train_samples": 64, "epochs": 1, "reduction_factor": 2}},
    "training": {"lr": 0.01, "batch_size": 32},
    "budget": {"trials": 8},
    "baseline": {"trials": 0},
    "execution": {"workers": 1},
}


def run(folder, **changes) -> list[optuna.trial.FrozenTrial]:
    """Runs the study with ``changes`` in its own folder (storage beside it); returns its trials."""
    study_file, url = conftest.study_beside_storage(folder, STUDY, **changes)
    assert main(["run", str(study_file)]) == 0
    return optuna.load_study(study_name="s", storage=url).get_trials()


def trained(trial: optuna.trial.FrozenTrial) -> bool:
    return "infeasible" not in trial.user_attrs and "duplicate_of" not in trial.user_attrs


def test_only_the_top_screens_train_in_full_and_their_results_match_an_unscreened_study(workdir):
    screened = [t for t in run(workdir / "screened") if trained(t)]
    plain = {t.number: t for t in run(workdir / "plain", pruner={"name": "asha", "min_epochs": 3, "max_epochs": 3})}

    assert {t.state for t in screened} == {TrialState.COMPLETE, TrialState.PRUNED}
    screens = []  # the screen accuracies so far, in trial order (one worker: each decides after the ones before)
    for t in screened:
        attrs = t.user_attrs
        # trained on the subset (not on the TRAIN samples of the full fit), for the screen's epochs
        assert attrs["screen"]["train_samples"] == 64 < TRAIN and attrs["screen"]["epochs"] == 1
        assert attrs["rung_0"] == attrs["screen"]["val_accuracy"]
        screens.append(attrs["rung_0"])
        better = sum(accuracy > attrs["rung_0"] for accuracy in screens)
        tied = sum(accuracy == attrs["rung_0"] for accuracy in screens) > 1
        keep = math.ceil(len(screens) / 2)  # reduction factor 2, one objective: the top half goes on
        if t.state == TrialState.PRUNED:
            assert attrs["epochs"] == 0 and "curve" not in attrs and t.values is None
            assert attrs["reason"].startswith(f"screen: not in the top 1/2 of {len(screens)} trials")
            assert tied or better >= keep
        else:  # the full fit: all 3 epochs on all the training data, from a fresh model
            assert tied or better < keep
            assert attrs["epochs"] == 3 and len(attrs["curve"]) == 3
            # the same genome and seed trained without a screen gives the same result
            assert plain[t.number].user_attrs["genome_key"] == attrs["genome_key"]
            assert plain[t.number].values == t.values
            assert "screen" not in plain[t.number].user_attrs


@pytest.mark.parametrize("pruner,needle", [
    ({"name": "none", "screen": {"train_samples": 64, "epochs": 1}}, "pruner.screen"),
    ({"name": "asha", "screen": {"train_samples": 64}}, "pruner.screen.epochs"),
    ({"name": "asha", "min_epochs": 3, "max_epochs": 3, "screen": {"train_samples": TRAIN, "epochs": 1}},
     "pruner.screen.train_samples"),
])
def test_a_screen_that_cannot_work_exits_2_with_one_line_naming_its_field(workdir, capsys, pruner, needle):
    study_file = conftest.write_study(workdir / "s.yaml", STUDY, pruner=pruner)
    assert main(["run", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err
