"""``nas report`` on a small real study: the data against the storage, and the page in headless Chromium."""
from __future__ import annotations

import math
import os
import re
from functools import partial
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import scratch_dir, study_beside_storage
from evaluators import training
from nas.cli import main
from reports.data import report_data
from search_space import Genome

CHROMIUM = "/usr/bin/chromium"
STUDY = {
    "name": "rep",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300},
    "search_space": {"preset": "perm-cnn-1d", "stages": {"low": 1, "high": 2}, "channels": [8, 16]},
    "constraints": {"max_params": 8000},  # tight enough that some sampled genomes are infeasible
    # the page says which generations NSGA-II bred (here: none); its own random start, so some draws are infeasible
    "sampler": {"name": "nsga2", "start": "random"},
    "pruner": {"name": "asha", "min_epochs": 1, "max_epochs": 3, "reduction_factor": 3},
    "training": {"lr": 0.01, "batch_size": 64},
    "budget": {"trials": 7},
    "baseline": {"trials": 2},
    "warm_start": ["mnist1d-cnn"],
    "execution": {"workers": 1},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Runs the real search once, then ``nas report --png`` from the study's folder; yields what they left."""
    root = tmp_path_factory.mktemp("report")
    path, url = study_beside_storage(root, STUDY)
    with scratch_dir(root) as mp:
        # the report never shows latency: 3 timed passes instead of 50 (each trial, pruned ones too, measures it)
        mp.setattr(training, "measure_latency_ms", partial(training.measure_latency_ms, repeats=3, warmup=1))
        assert main(["run", str(path)]) == 0
        assert main(["report", str(path), "--png"]) == 0
    search = optuna.load_study(study_name="rep", storage=url)
    baseline = optuna.load_study(study_name=search.user_attrs["baseline_study"], storage=url)
    yield {"root": root, "url": url, "yaml": str(path), "study": search, "baseline": baseline}


def finished_in_storage(study: optuna.Study) -> list[int]:
    """Counted straight from the storage: trained (or copied) COMPLETE trials and PRUNED ones with a curve."""
    return [t.number for t in study.get_trials()
            if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs
            or t.state == TrialState.PRUNED and t.user_attrs.get("curve")]


def front_by_hand(study: optuna.Study) -> list[int]:
    """The Pareto set by brute force from the raw attributes: trials COMPLETE, feasible, trained themselves (not
    copies), none of which another beats on accuracy without more parameters; by increasing parameters."""
    trained_here = [(t.user_attrs["val_accuracy"], t.user_attrs["params"], t.number) for t in study.get_trials()
                    if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs
                    and "duplicate_of" not in t.user_attrs]
    front = [(params, number) for acc, params, number in trained_here
             if not any(a >= acc and p <= params and (a, p) != (acc, params) for a, p, _ in trained_here)]
    return [number for _, number in sorted(front)]


def hypervolume_by_hand(study: optuna.Study) -> float:
    """Area of the union of the boxes [0, accuracy] x [-log10(reference), -log10(params)] of the trained trials,
    summed in horizontal strips (another route than the x-sorted sweep of ``hypervolume_2d``)."""
    reference = -math.log10(study.user_attrs["config"]["constraints"]["max_params"])
    points = sorted(((-math.log10(t.user_attrs["params"]), t.user_attrs["val_accuracy"]) for t in study.get_trials()
                     if t.number in set(front_by_hand(study))), reverse=True)
    area, best = 0.0, 0.0
    for (y, acc), lower in zip(points, [p[0] for p in points[1:]] + [reference]):
        best = max(best, acc)
        area += best * max(0.0, y - max(lower, reference))
    return area


def test_report_data_matches_the_storage(study):
    search, baseline = study["study"], study["baseline"]
    data = report_data(search, baseline, study["yaml"], url=study["url"])
    assert sorted(p.number for p in data.points) == finished_in_storage(search)
    assert [p.number for p in data.pareto] == front_by_hand(search) != []
    assert [p.number for p in data.baseline_front] == front_by_hand(baseline) != []
    assert all(p.family != "dense" for p in data.points) and {p.family for p in data.baseline_front} == {"dense"}
    assert any(p.zoo == "mnist1d-cnn" for p in data.points)
    infeasible = sum("infeasible" in t.user_attrs for t in search.get_trials())
    assert data.counts["infeasible"] == infeasible and data.not_drawn.get("infeasible", 0) == infeasible
    dense = max(data.baseline_front, key=lambda p: p.val_accuracy)
    assert f"{dense.params:,} params" in data.headline.text
    named = data.headline.smallest_beating
    if named is not None:  # a front point smaller than the best dense net, named by number (and zoo name if any)
        assert named.params < dense.params and named.number in [p.number for p in data.pareto]
        assert data.headline.text.startswith(f"Trial {named.number} (" + (f"{named.zoo}, a warm start; "
                                                                          if named.zoo else ""))
    else:
        assert data.headline.text.startswith("No genome of the study with fewer parameters matches")
    expected = {"search": hypervolume_by_hand(search), "baseline": hypervolume_by_hand(baseline)}
    assert min(expected.values()) > 0
    assert data.hypervolume.by_number[-1] == pytest.approx(expected["search"])
    assert data.hypervolume.baseline == pytest.approx(expected["baseline"])
    trained_by_hand = [t for t in search.get_trials() if t.state == TrialState.COMPLETE and "infeasible" not in
                       t.user_attrs and "duplicate_of" not in t.user_attrs]
    sampled = [t for t in trained_by_hand if t.params]
    assert data.choices.trials == [t.number for t in sampled]
    if len(sampled) < 5:  # too few for PED-ANOVA: no ranking, and the page says how many there are
        assert data.choices.importances == {} and f"has {len(sampled)} so far" in data.choices.note
    else:  # ranked: shares of the sampled parameters, summing to one, or a note saying why not
        drawn = set().union(*(t.params for t in sampled))
        assert (set(data.choices.importances) <= drawn and sum(data.choices.importances.values()) == pytest.approx(1)
                or not data.choices.importances and data.choices.note.startswith("Optuna could not"))
    assert data.findings.trained_trials == len(trained_by_hand) > 0
    assert data.choices.axes[-1].name == "val accuracy"
    # 7 trials, NSGA-II's population 8 (its floor): no generation filled, so the page says the search never bred;
    # it counts every sampled trial (a warm start or an infeasible zoo genome may be told without the sampler)
    saw = re.match(r"NSGA-II never bred: all (\d+) trials NSGA-II saw are generation 0", data.search_note)
    sampled = sum("zoo" not in t.user_attrs for t in search.get_trials())
    assert saw and sampled <= int(saw.group(1)) <= len(search.get_trials())


def test_pareto_details_draw_every_node_and_name_the_export(study):
    data = report_data(study["study"], study["baseline"], study["yaml"])
    trials = study["study"].get_trials()
    for detail, trial in zip(data.details, [trials[n] for n in front_by_hand(study["study"])], strict=True):
        info = Genome.from_json(trial.user_attrs["genome"]).analyze()
        drawing = detail.drawing
        assert {n.name for n in drawing.nodes} == set(info)
        assert len(drawing.edges) == sum(len(n.inputs) for n in info.values())
        y = {n.name: n.y for n in drawing.nodes}
        assert all(y[source] > y[target] for source, target in drawing.edges)  # input on top, flowing down
        assert detail.curve_epochs == list(range(1, trial.user_attrs["epochs"] + 1))
        assert detail.export_command.startswith(f"nas export {study['yaml']} --trial {trial.number} --out ")


def test_png_is_written_when_kaleido_and_chrome_are_there(study):
    out = study["root"] / "reports" / "rep"
    assert (out / "index.html").stat().st_size > 1_000_000  # plotly.js is inside
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: pareto.png needs a Chrome (apt-get install chromium)")
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_renders_offline_in_chromium_without_errors(study):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    page_path = Path(study["root"]) / "reports" / "rep" / "index.html"
    errors, remote = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (remote.append(route.request.url), route.abort()))
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0 && "
                               "document.getElementById('pareto').data !== undefined", timeout=30_000)
        plotted = page.evaluate("""() => {
            const plots = [...document.querySelectorAll('.js-plotly-plot')];
            const pareto = plots.find(p => p.id === 'pareto');
            const points = pareto.data.filter(t => t.meta && t.meta.role === 'trial')
                                      .reduce((n, t) => n + t.x.filter(x => x !== null).length, 0);
            return {ids: plots.map(p => p.id), points: points};
        }""")
        page.screenshot(path="/tmp/report.png", full_page=True)
        browser.close()
    assert errors == [] and remote == []
    assert plotted["points"] == len(finished_in_storage(study["study"]))
    per_trial = [f"{kind}-{n}" for n in front_by_hand(study["study"]) for kind in ("curve", "genome")]
    assert {"pareto", "hypervolume", *per_trial} <= set(plotted["ids"])


def test_report_on_a_missing_study_exits_2_with_one_line(study, capsys):
    code = main(["report", "nosuchstudy", "--storage", study["url"]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'nosuchstudy' not found" in err and "rep" in err
    missing = f"sqlite:///{study['root']}/x.db"
    code = main(["report", "nosuchstudy", "--storage", missing])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "x.db" in err
