"""``nas run --simulate``: synthetic learning curves in place of training, everything else for real."""
from __future__ import annotations

import json

import optuna
from conftest import write_study
from evaluators.datasets import load_dataset
from evaluators.simulated import simulated_train
from evaluators.training import TrainConfig
from nas.cli import main
from search_space import get_zoo

DATA = {"name": "synthetic", "shape": [40], "classes": 4, "samples": 200}


def test_the_same_genome_gets_the_same_curve_and_another_genome_another():
    data = load_dataset(DATA)
    config = TrainConfig(epochs=6, lr=0.01)
    cnn, mlp = (get_zoo(name).build((40,), 4) for name in ("mnist1d-cnn", "mnist1d-mlp"))
    seen = []
    first = simulated_train(cnn, data, config, callback=lambda r: seen.append(r.val_accuracy))
    assert simulated_train(cnn, data, config).curve == first.curve and len(first.curve) == 6
    assert seen == [c["val_accuracy"] for c in first.curve] and seen == sorted(seen)  # rises with epochs
    assert 0.25 < first.val_accuracy < 1 and simulated_train(mlp, data, config).curve != first.curve
    stopped = simulated_train(cnn, data, config, callback=lambda r: r.epoch == 2)
    assert stopped.stopped == "callback" and stopped.epochs == 2


def test_a_simulated_study_runs_the_machinery_and_says_it_trained_nothing(workdir, capsys):
    study_file = write_study(workdir / "s.yaml", dataset=DATA, budget={"trials": 12}, baseline={"trials": 3},
                             pruner={"name": "asha", "min_epochs": 1, "max_epochs": 9, "reduction_factor": 3},
                             search_space={"preset": "perm-cnn-1d", "stages": 1, "channels": [8, 16]})
    assert main(["run", str(study_file), "--simulate"]) == 0
    capsys.readouterr()
    url = "sqlite:///runs/tiny/study.db"
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.user_attrs.get("simulated") for t in trials if "infeasible" not in t.user_attrs)
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)  # the rung rule ran on the curves
    assert not (workdir / "runs" / "tiny" / "artifacts").exists()  # no weights: nothing was trained
    baseline = study.user_attrs["baseline_study"]
    assert baseline.endswith("-simulated")  # never shared with a trained baseline of the same data
    assert main(["status", str(study_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["headline"].startswith("SIMULATED")
    # resuming without --simulate would mix synthetic and trained results: refused, naming the field
    assert main(["run", str(study_file)]) == 2
    assert "execution.simulate" in capsys.readouterr().err
