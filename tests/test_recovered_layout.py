"""The report's drawing of a recovered order: the mean training input read through the order a genome stores."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from evaluators.datasets import load_dataset
from reports.layout import layout_figure, recovered_layouts
from search_space import Genome

SPEC = {"name": "synthetic", "shape": [1, 4, 6], "classes": 3, "samples": 60}


def reordered(order: list[int], method: str) -> str:
    g = Genome()
    x = g.add("input", "input", shape=[1, 4, 6])
    x = g.add("reorder", "reorder", [x], order=order, method=method)
    x = g.add("flatten", "flatten", [x])
    g.add("output", "output", [g.add("logits", "dense", [x], out_features=3)])
    return g.validate().to_json()


def study_of(genomes: list[str]) -> list:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, genome in enumerate(genomes):
        study.add_trial(optuna.trial.create_trial(values=[0.5, 100 + i], user_attrs={
            "val_accuracy": 0.5, "params": 100 + i, "family": "plain", "genome": genome}))
    return study.trials


def test_the_layout_reads_the_mean_input_through_the_stored_order(workdir):
    reverse = list(range(23, -1, -1))
    layouts, note = recovered_layouts(SPEC, study_of([reordered(reverse, "grid")] * 2 + [reordered(reverse, "chain")]))
    mean = load_dataset(SPEC).x_train.mean(0).numpy()
    assert note is None and [(l.method, l.trials) for l in layouts] == [("grid", 2), ("chain", 1)]
    grid, chain = layouts
    np.testing.assert_allclose(grid.given, mean.reshape(4, 6))
    np.testing.assert_allclose(grid.recovered, mean.reshape(-1)[::-1].reshape(4, 6))  # reversed, on the grid
    np.testing.assert_allclose(chain.recovered, mean.reshape(-1)[::-1])  # a 1D order stays a line
    assert len(layout_figure(grid).data) == 2 and layout_figure(grid).data[0].type == "heatmap"


def test_missing_data_is_a_note_naming_the_file_not_a_failed_report(workdir):
    spec = {"name": "fashion-mnist", "path": str(workdir / "nowhere")}
    layouts, note = recovered_layouts(spec, study_of([reordered(list(range(24)), "grid")]))
    assert layouts == [] and "nowhere" in note


def test_no_reorder_op_draws_nothing(workdir):
    g = Genome()
    x = g.add("flatten", "flatten", [g.add("input", "input", shape=[1, 4, 6])])
    g.add("output", "output", [g.add("logits", "dense", [x], out_features=3)])
    assert recovered_layouts(SPEC, study_of([g.validate().to_json()])) == ([], None)


@pytest.mark.parametrize("method", ["spectral", "chain", "grid"])
def test_each_reorder_method_is_a_findings_choice(method):
    from reports.findings import CHOICES

    nodes = ({"op": "reorder", "method": method, "order": [0]},)
    assert CHOICES[f"reorder {method}"](nodes) and CHOICES["reorder"](nodes)
    assert not any(CHOICES[f"reorder {m}"](nodes) for m in ("spectral", "chain", "grid") if m != method)
