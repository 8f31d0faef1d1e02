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


def test_a_single_objective_study_still_reports_accuracy_against_parameters(workdir, capsys):
    """With ``val_accuracy`` as its only objective the study's own front is its best trial; `nas status` shows the
    accuracy-vs-params front of its trained trials and that front's hypervolume, both computed here by hand."""
    import math

    study_file = write_study(workdir / "one.yaml", name="one", dataset=DATA, budget={"trials": 16},
                             baseline={"trials": 0}, objectives=[{"metric": "val_accuracy", "direction": "maximize"}],
                             constraints={"max_params": 20000},
                             pruner={"name": "asha", "min_epochs": 1, "max_epochs": 9, "reduction_factor": 3},
                             search_space={"preset": "perm-cnn-1d", "stages": 1, "channels": [8, 16, 32]})
    assert main(["run", str(study_file), "--simulate"]) == 0
    capsys.readouterr()
    assert main(["status", str(study_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name="one", storage="sqlite:///runs/one/study.db")
    trained = {(t.user_attrs["val_accuracy"], t.user_attrs["params"]) for t in study.get_trials()
               if t.state == optuna.trial.TrialState.COMPLETE and "infeasible" not in t.user_attrs}
    front = sorted(((a, p) for a, p in trained if not any(b >= a and q <= p and (b, q) != (a, p) for b, q in trained)),
                   key=lambda point: point[1])
    assert len(front) >= 2  # more than the single best trial
    assert [(row["val_accuracy"], row["params"]) for row in summary["pareto"]] == front
    # the area under best-accuracy-so-far against log10(params), up to the size limit
    edges = [math.log10(p) for _, p in front] + [math.log10(20000)]
    area = sum(a * (edges[i + 1] - edges[i]) for i, (a, _) in enumerate(front))
    assert math.isclose(summary["hypervolume"], area, rel_tol=1e-9)


def test_a_trials_curve_is_stored_at_its_rungs_and_whole_with_its_result(tmp_path, monkeypatch):
    """Between rungs the curve is written at most once every CURVE_EVERY_S, 0.25 s (an epoch of a small genome takes
    milliseconds, a write is a storage round trip); at a rung it is stored before the rung rule reads the rung,
    and ``record_result`` stores it whole."""
    from conftest import TINY_STUDY
    from nas.execution import trial as trial_module
    from nas.study.config import parse_config
    from nas.study.records import write

    config = parse_config({**TINY_STUDY, "pruner": {"name": "asha", "min_epochs": 1, "max_epochs": 9,
                                                    "reduction_factor": 3}})
    assert config.pruner.rungs() == [1, 3]
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    genome, data = get_zoo("mnist1d-cnn").build((40,), 4), load_dataset(DATA)

    def stored_curve(number: int) -> list:
        return optuna.load_study(study_name="s", storage=url).trials[number].user_attrs.get("curve", [])

    trial = study.ask()
    write(trial, params=genome.params, flops=genome.flops)  # as sample_trial does: the rung rule ranks them
    on_epoch = trial_module.EpochRecorder(study, config, trial, genome)
    result = simulated_train(genome, data, TrainConfig(epochs=5, lr=0.01), callback=on_epoch)
    assert result.stopped is None and len(stored_curve(0)) == 3  # written at rung 3, not at epochs 4 and 5
    trial_module.record_result(trial, trial_module.PreparedTrial(genome, TrainConfig(epochs=5, lr=0.01)), result,
                               None)
    assert stored_curve(0) == result.curve and len(result.curve) == 5

    monkeypatch.setattr(trial_module, "CURVE_EVERY_S", 0.0)  # slow epochs (here: no rungs): written as each ends
    second = study.ask()
    simulated_train(genome, data, TrainConfig(epochs=5, lr=0.01),
                    callback=trial_module.EpochRecorder(study, parse_config(TINY_STUDY), second, genome))
    assert len(stored_curve(1)) == 5
