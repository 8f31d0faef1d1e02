"""``nas findings --final``: which genomes are retrained, on which data, and that the stored table is what ran."""
from __future__ import annotations

import json
import subprocess

import optuna
import pytest

from evaluators.datasets import load_dataset
from nas.study.final import thin_front
from tests.conftest import TINY_STUDY, nas_command, nas_env, study_beside_storage


def test_thinning_keeps_both_ends_and_spreads_the_rest():
    front = list(range(10))  # stands for trials sorted by size, the last the most accurate
    assert thin_front(front, 4) == [0, 3, 6, 9]
    assert thin_front(front, 2) == [0, 9]
    assert thin_front(front, 1) == [9]
    assert thin_front(front[:3], 4) == [0, 1, 2]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny study with its dense baseline, searched on 60 of its training samples."""
    folder = tmp_path_factory.mktemp("final")
    dataset = {**TINY_STUDY["dataset"], "samples": 300, "train_samples": 60}
    path, url = study_beside_storage(folder, TINY_STUDY, dataset=dataset, budget={"trials": 6},
                                     baseline={"trials": 2})
    subprocess.run(nas_command("run", path), cwd=folder, env=nas_env(folder), check=True, capture_output=True)
    return folder, path, url, dataset


def test_final_retrains_the_front_and_the_best_dense_on_all_train_and_val(finished):
    folder, path, url, dataset = finished
    done = subprocess.run(nas_command("findings", path, "--final", "--seeds", "2", "--genomes", "2", "--json"),
                          cwd=folder, env=nas_env(folder), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["final"]
    sources = [r["source"] for r in rows]
    assert 1 <= sources.count("dense") <= 2 and 1 <= sources.count("search") <= 5
    assert all(len(r["test_accuracies"]) == 2 and all(0 <= a <= 1 for a in r["test_accuracies"]) for r in rows)
    study = optuna.load_study(study_name="tiny", storage=url)
    full = load_dataset({k: v for k, v in dataset.items() if k != "train_samples"}, folder / "cache")
    # every training and validation sample of the full split, not the 60 the search trained on
    assert study.user_attrs["final"]["train_samples"] == len(full.x_train) + len(full.x_val) > 60
    most_accurate = max((t for t in study.best_trials), key=lambda t: t.values[0])
    assert most_accurate.number in [r["trial"] for r in rows if r["source"] == "search"]
    baseline = optuna.load_study(study_name=study.user_attrs["baseline_study"], storage=url)
    best_dense = max((t for t in baseline.trials if t.state.name == "COMPLETE"), key=lambda t: (t.values[0], -t.number))
    assert best_dense.number in [r["trial"] for r in rows if r["source"] == "dense"]


def test_a_zoo_model_the_study_never_tried_is_one_line_naming_it_before_any_recheck(finished):
    folder, path, _, _ = finished
    done = subprocess.run(nas_command("findings", path, "--final", "--also", "lenet5"), cwd=folder,
                          env=nas_env(folder), capture_output=True, text=True)
    assert done.returncode == 2 and "--also lenet5" in done.stderr and "Traceback" not in done.stderr
    rechecked = subprocess.run(nas_command("findings", path, "--recheck", "1", "--final", "--also", "lenet5"),
                               cwd=folder, env=nas_env(folder), capture_output=True, text=True)
    assert rechecked.returncode == 2 and "--also lenet5" in rechecked.stderr
    assert "rechecking" not in rechecked.stdout  # refused before retraining anything


def test_the_smallest_trial_within_some_points_of_an_accuracy():
    from nas.study.final import smallest_within

    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, params in [(0.90, 5000), (0.885, 900), (0.87, 300), (0.80, 50)]:
        study.add_trial(optuna.trial.create_trial(values=[acc, params],
                                                  user_attrs={"val_accuracy": acc, "params": params}))
    trials = study.trials
    assert smallest_within(trials, 0.89, 1).user_attrs["params"] == 900   # 0.885 is within 1 point, 0.87 is not
    assert smallest_within(trials, 0.89, 3).user_attrs["params"] == 300   # 0.87 is within 3, 0.80 is not
    assert smallest_within(trials, 0.99, 1) is None


def test_trials_named_on_the_command_line_replace_the_picks_and_a_bad_one_is_one_line(finished):
    folder, path, url, _ = finished
    study = optuna.load_study(study_name="tiny", storage=url)
    trained = [t.number for t in study.trials if t.state.name == "COMPLETE" and "infeasible" not in t.user_attrs]
    done = subprocess.run(nas_command("findings", path, "--final", "--seeds", "1", "--trials", str(trained[0]),
                                      "--json"), cwd=folder, env=nas_env(folder), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [r["trial"] for r in json.loads(done.stdout)["final"] if r["source"] == "search"] == [trained[0]]
    bad = subprocess.run(nas_command("findings", path, "--final", "--trials", "999"), cwd=folder,
                         env=nas_env(folder), capture_output=True, text=True)
    assert bad.returncode == 2 and "--trials: trial 999" in bad.stderr


def test_a_zoo_trial_is_not_taken_for_a_dense_trial_of_the_same_number():
    from nas.study.final import chosen_trials

    def study_of(rows):
        study = optuna.create_study(directions=["maximize", "minimize"])
        for acc, params, zoo in rows:
            attrs = {"val_accuracy": acc, "params": params, "genome": "{}", **({"zoo": zoo} if zoo else {})}
            study.add_trial(optuna.trial.create_trial(values=[acc, params], user_attrs=attrs))
        return study

    search = study_of([(0.9, 5000, None), (0.8, 900, "lenet5")])
    dense = study_of([(0.7, 100, None), (0.85, 2000, None)])  # dense trial 1 has the zoo trial's number
    chosen = chosen_trials(search, dense, 0, also=["lenet5"])
    assert ("zoo", 1) in [(source, t.number) for source, t in chosen]


def test_recheck_ranks_the_most_accurate_trials_again_on_all_training_data_and_final_retrains_its_winner(finished):
    folder, path, url, dataset = finished
    study = optuna.load_study(study_name="tiny", storage=url)
    trained = [t for t in study.trials if t.state.name == "COMPLETE" and "infeasible" not in t.user_attrs
               and "duplicate_of" not in t.user_attrs]
    expected = sorted(trained, key=lambda t: (-t.user_attrs["val_accuracy"], t.number))[:2]
    done = subprocess.run(nas_command("findings", path, "--recheck", "2", "--recheck-seeds", "2", "--final", "--seeds",
                                      "1", "--json"),
                          cwd=folder, env=nas_env(folder), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rows = data["recheck"]
    assert {r["trial"] for r in rows} == {t.number for t in expected}
    assert [r["val_accuracy"] for r in rows] == sorted((r["val_accuracy"] for r in rows), reverse=True)
    assert all(len(r["val_accuracies"]) == 2 and r["val_accuracy"] == pytest.approx(sum(r["val_accuracies"]) / 2)
               for r in rows)  # ranked by the mean over the two seeds
    by_number = {t.number: t for t in expected}
    assert all(r["searched_val_accuracy"] == by_number[r["trial"]].user_attrs["val_accuracy"] for r in rows)
    full = load_dataset({k: v for k, v in dataset.items() if k != "train_samples"}, folder / "cache")
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs["recheck"]
    assert stored["train_samples"] == len(full.x_train) > 60  # validation held out, train_samples dropped
    # validation accuracy on the full validation split: a whole number of its samples
    assert all(abs(a * len(full.x_val) - round(a * len(full.x_val))) < 1e-6 for r in rows for a in r["val_accuracies"])
    assert [r["trial"] for r in data["final"] if r["source"] == "search"] == [rows[0]["trial"]]
    again = subprocess.run(nas_command("findings", path, "--recheck", "0"), cwd=folder, env=nas_env(folder),
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--recheck must be at least 1" in again.stderr


def test_the_most_accurate_pick_is_the_most_accurate_whatever_the_objectives():
    """With objectives accuracy and FLOPs the front is not ordered by accuracy along parameters: the pick is still
    the front's most accurate trial, not its largest."""
    from nas.study.final import chosen_trials

    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, params, flops in [(0.90, 5000, 100), (0.80, 9000, 50)]:  # neither dominates the other in (acc, flops)
        study.add_trial(optuna.trial.create_trial(values=[acc, flops], user_attrs={
            "val_accuracy": acc, "params": params, "flops": flops}))
    picks = chosen_trials(study, None, 0)
    assert [(source, t.user_attrs["val_accuracy"]) for source, t in picks] == [("search", 0.90)]
