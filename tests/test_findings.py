"""The findings arithmetic on hand-built storages with answers worked out by hand."""
from __future__ import annotations

import math

import optuna
import pytest

from reports.findings import best_within_budgets, choice_rows, ratios_at_matched_accuracy, scored
from search_space import Genome


def genome(permute: bool) -> str:
    g = Genome()
    x = g.add("input", "input", shape=[32])
    x = g.add("reshape", "reshape", [x], shape=[1, 32])
    if permute:
        x = g.add("perm", "permute", [x], seed=1)
    x = g.add("conv", "conv", [x], out_channels=4)
    x = g.add("gap", "global_pool", [x])
    g.add("output", "output", [g.add("logits", "dense", [x], out_features=3)])
    return g.to_json()


def storage(points: list[tuple[float, int, bool, str]], extra: dict | None = None) -> optuna.Study:
    """An in-memory study of trained trials: (val accuracy, params, uses a permutation, family)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, params, permute, family in points:
        study.add_trial(optuna.trial.create_trial(values=[acc, params], user_attrs={
            "val_accuracy": acc, "params": params, "family": family, "genome": genome(permute), **(extra or {})}))
    return study


SEARCH = [(0.8, 1_000, True, "permutation"), (0.6, 100, True, "permutation"), (0.7, 1_000, False, "plain")]


def test_the_front_with_a_choice_against_the_front_without():
    rows = {r.choice: r for r in choice_rows(scored(storage(SEARCH).trials), params_reference=10_000)}
    row = rows["permutation"]
    assert (row.with_trials, row.without_trials) == (2, 1)
    # from (0, -4): (0.8, -3) covers 0.8 x 1, (0.6, -2) adds 0.6 x 1; without: (0.7, -3) covers 0.7
    assert row.hv_with == pytest.approx(1.4) and row.hv_without == pytest.approx(0.7)
    assert "twist" not in rows  # nobody made it: it says nothing
    assert "global-pooling head (else flatten + dense)" not in rows  # everybody made it


def test_best_accuracy_within_parameter_budgets_per_family():
    table = best_within_budgets(scored(storage(SEARCH).trials), budgets=(100, 1_000))
    assert table == {"permutation": {100: 0.6, 1_000: 0.8}, "plain": {1_000: 0.7}}


def test_parameter_ratio_at_matched_accuracy_along_the_dense_front():
    dense = scored(storage([(0.75, 5_000, False, "dense"), (0.5, 500, False, "dense"),
                            (0.4, 4_000, False, "dense"), (0.9, 50_000, False, "dense")]).trials)
    ratios = ratios_at_matched_accuracy(scored(storage(SEARCH).trials), dense)
    # dense front: 500 (0.5), 5000 (0.75), 50000 (0.9; no searched trial reaches it); 4000 (0.4) is dominated
    assert ratios == [(0.5, 500, 100, 5.0), (0.75, 5_000, 1_000, 5.0)]


def test_copies_and_untrained_trials_are_not_findings():
    copies = storage(SEARCH, extra={"duplicate_of": 0})
    assert scored(copies.trials) == []
    assert math.isclose(sum(p.val_accuracy for p in scored(storage(SEARCH).trials)), 2.1)


def test_nas_findings_reads_them_from_a_storage(tmp_path, capsys):
    import json

    from nas.cli import main

    url = f"sqlite:///{tmp_path}/study.db"
    for name, points in (("f", SEARCH), ("f-dense", [(0.75, 5_000, False, "dense")])):
        built = storage(points)
        target = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
        target.add_trials(built.trials)
    optuna.load_study(study_name="f", storage=url).set_user_attr("baseline_study", "f-dense")
    assert main(["findings", "f", "--storage", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trained_trials"] == 3 and data["ratios_at_matched_accuracy"] == [
        {"dense_val_accuracy": 0.75, "dense_params": 5000, "searched_params": 1000, "ratio": 5.0}]
    assert [r["choice"] for r in data["choices"]] == ["permutation"]
    assert main(["findings", "f", "--storage", url]) == 0
    assert "5.0x fewer" in capsys.readouterr().out


def test_a_ratio_below_one_reads_as_more_parameters():
    from reports.findings import ratio_words

    assert ratio_words(5.0) == "5.0x fewer" and ratio_words(0.5) == "2.0x more"
