"""Each contender of benchmarks/peers.py, run for real on a tiny problem: it trains trials through the shared
trainer, its records score, and it never runs more than the 2 workers at once. Syne Tune's needs the ``peers``
extra (``make venv`` installs it); without it that test is skipped with the install command."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402

TINY = {
    "name": "tiny-peers",
    "dataset": {"name": "synthetic", "shape": [40], "classes": 4, "samples": 300},
    "search_space": {"preset": "perm-cnn-1d", "stages": 1, "channels": [8, 16]},
    "constraints": {"max_params": 20000},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "asha", "min_epochs": 1, "max_epochs": 2, "reduction_factor": 3},
    "training": {"lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "batch_size": 64},
    "budget": {"trials": 60},
    "baseline": {"trials": 0},
    "execution": {"backend": "local", "workers": 2},
}
# Ray Tune's actors start slowest (each imports torch and builds the problem): 40 s once saw no trial start on a
# loaded machine, so it gets 60.
SECONDS = {"ours": 15, "ours-random-start": 15, "ours-no-slow": 15, "ours-cold": 15, "ours-ray": 40, "ours-nsga2": 15,
           "ours-mv": 15, "ray-tune": 60, "syne-tune": 40, "optuna-nsga2": 10, "optuna-random": 10}


@pytest.mark.parametrize("contender", peers.CONTENDERS)
def test_each_contender_trains_and_scores_on_a_tiny_problem(contender, workdir):
    if contender == "syne-tune" and importlib.util.find_spec("syne_tune") is None:
        pytest.skip(f"Syne Tune is not installed: {peers.PEERS_INSTALL}")
    # a loaded machine may finish no trial in time (ours-ray finished none in 80 s beside a 2-thread retrain)
    for seconds in (SECONDS[contender], 2 * SECONDS[contender], 4 * SECONDS[contender]):
        run = peers.run_contender(contender, TINY, seed=0, seconds=seconds)
        result = peers.score(run, full=2, seconds=seconds, max_params=20000)
        if result["full"] >= 1:
            break
    assert result["started"] >= 2 and result["full"] >= 1 and result["epochs"] >= 2
    assert 0 < result["hv"] <= math.log10(20000)  # inside the reference box: accuracy <= 1, params >= 1
    assert 1 <= result["concurrency"] <= 2
    if contender == "ray-tune":  # what Tune reports counts stopped trials' last results too
        assert result["hv_reported"] >= result["hv"] and 0 <= result["front_short"] <= 1


def test_a_missing_peer_is_named_with_its_install_command():
    assert peers.missing_package("optuna-random") is None
    installed = importlib.util.find_spec("syne_tune") is not None
    assert peers.missing_package("syne-tune") == (None if installed else
                                                  f"syne_tune is not installed: {peers.PEERS_INSTALL}")


def test_scores_on_hand_made_records():
    """Two full-budget trials (one dominated), one cut at the stop instant, one infeasible, one copy of a twin:
    honest front = 1."""
    t0 = 1000.0
    records = [
        {"start": t0, "epochs": [(t0 + 5, 0.5, 4.0), (t0 + 10, 0.8, 9.0)], "params": 100, "infeasible": False,
         "end": t0 + 10},
        {"start": t0, "epochs": [(t0 + 6, 0.4, 5.0), (t0 + 12, 0.7, 11.0)], "params": 1000, "infeasible": False,
         "end": t0 + 12},
        {"start": t0 + 12, "epochs": [(t0 + 15, 0.9, 3.0), (t0 + 25, 0.95, 13.0)], "params": 10, "infeasible": False,
         "end": t0 + 25},  # its second epoch ends after the stop (t0 + 20): not on the honest front
        {"start": t0 + 13, "epochs": [], "params": 5, "infeasible": True, "end": t0 + 13},
        {"start": t0 + 1, "epochs": [], "params": 100, "infeasible": False, "end": t0 + 11, "copy": True},
    ]  # the last one waited for a running twin (1) and copied its result: it trained nothing
    result = peers.score({"records": records, "started": t0, "reported": None}, full=2, seconds=20, max_params=10000)
    assert result["full"] == 2 and result["started"] == 5 and result["epochs"] == 5
    assert result["hv"] == pytest.approx(0.8 * 2.0)  # (0.8, 100 params) against (0, 10,000): 0.8 x log10(100)
    assert result["overhead"] == pytest.approx(1 - (9 + 11 + 3) / 40)
    assert result["concurrency"] == 2  # 1 and 2 overlap; 2 ends as 3 starts; 4 starts and ends inside 3; 5 is a copy
    assert peers.time_to_target(result["curve"], 1.0, 20) == pytest.approx(0.5)  # reached at t0 + 10
    # below 1,000 params: (0.8, 100) from 100 to 1,000 params = 0.8 x log10(10); the rest from 1,000 to 10,000
    assert result["hv_small"] == pytest.approx(0.8) and result["hv"] - result["hv_small"] == pytest.approx(0.8)
    assert result["best_within"] == {1000: 0.8, 10000: 0.8, 100000: 0.8}  # the 0.7 trial is dominated, 0.95 late


def test_comparisons_pair_runs_by_seed():
    """A contender holding fewer seeds than ours (runs reused across sessions) is compared on its own seeds."""
    def run(seed: int, hv: float) -> dict:
        return {"seed": seed, "hv": hv, "curve": [(10.0, hv / 2), (50.0, hv)], "budget_s": 100.0, "started": 4,
                "full": 2, "epochs": 8, "overhead": 0.1, "concurrency": 2}

    scores = {"ours": [run(0, 1.0), run(1, 4.0), run(2, 2.0)], "optuna-random": [run(2, 1.0)]}
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in peers.table(scores)[2:]}
    assert rows["optuna-random"][2] == "2.00x"  # ours' seed 2 (2.0) against random's seed 2 (1.0), not ours' mean
    assert rows["optuna-random"][3] == "1/1"
    # ours' seed-2 curve reaches random's seed-2 final (1.0) at 10 s of 100; seeds 0 and 1 have no random run
    assert rows["ours"][4] == "10% (1/1 seeds)"


def test_the_spread_start_benchmark_reads_the_first_sampled_trials_after_the_warm_starts():
    """benchmarks/spread_start.py on hand-made records: the first 10 trials after the 2 warm starts by reservation
    time, their training time (each trial's last ``elapsed_s``), and the full-budget trials under 1,000 params."""
    import spread_start

    def record(start: float, params: int, elapsed: list[float], copy: bool = False) -> dict:
        return {"start": start, "params": params, "copy": copy,
                "epochs": [(start + e, 0.5, e) for e in elapsed]}

    records = [record(0.5, 60_000, [3.0, 6.0, 9.0]), record(0.0, 240_000, [5.0])]  # the warm starts, any order
    records += [record(10.0 + i, 100 * (i + 2), [1.0, 2.0, 3.0] if i % 2 else [4.0]) for i in range(12)]
    records.append(record(11.5, 150, [1.0, 2.0, 3.0], copy=True))  # a twin's copy: trained nothing
    line, = spread_start.run_lines({"ours": [{"seed": 3, "records": records}]}, ["ours"], warm_starts=2, full=3)
    # first 10 sampled: i = 0..9, 5 at 4.0 s and 5 at 3.0 s = 35 s of 9 + 5 + 35 + (4.0 + 3.0) = 56 s
    assert line == ("ours seed 3: first 10 sampled trials trained 35 s (62% of 56 s), params 200-1,100; "
                    "14 trials trained, 4 full-budget under 1,000 params")  # i = 1, 3, 5, 7: 300-900 params


def test_the_slow_trials_replay_judges_each_first_epoch_against_those_ended_before_it():
    """benchmarks/slow_trials.py on hand-made records, the expectations worked out by hand: 5x the median of the
    first epochs that ended before, 4 of them at least, 0.5 s over their median, the first ``skip`` never judged."""
    import slow_trials

    def record(start: float, first: float, epochs: int = 1, params: int = 100, copy: bool = False) -> dict:
        return {"start": start, "params": params, "infeasible": False, "copy": copy,
                "epochs": [(start + first * e, 0.5 + 0.01 * e, first * e) for e in range(1, epochs + 1)]}

    records = [record(0.0, 30.0, 2)]  # started first and slow, but not judged (skip 1)
    records += [record(1.0 + i, 1.0) for i in range(4)]  # four 1 s first epochs, ended by 5 s
    records += [record(10.0, 5.0, 3),  # 5x the median 1 s: not more, goes on
                record(20.0, 6.0, 3, params=10),  # 6x the median of 1, 1, 1, 1, 5 (1 s): stopped, saves 12 s
                record(30.0, 1.2, 3, copy=True)]  # a twin's copy: not a trial that trained
    run = {"seed": 0, "started": 0.0, "records": records}
    assert [r["start"] for r in slow_trials.replay(run, 5.0, skip=1)] == [20.0]
    assert slow_trials.replay(run, 5.0, skip=0)[0]["start"] == 0.0  # the slow first one, with 4 others ended by then
    assert [r["start"] for r in slow_trials.replay(run, 8.0, skip=1)] == []
    # training time 60 + 4 + 15 + 18 + 3.6 = 100.6 s; the 6 s trial's epochs 2-3 saved 12 s. Front at 3 epochs:
    # (0.53, 100) and (0.53, 10); without the stopped one (0.53, 100) alone
    line = slow_trials.run_lines("ours", run, [5.0], skip=1, full=3, seconds=100.0, max_params=1000.0)
    assert line == f"| ours | 0 | {0.53 * 2:.3f} | 1 | {12 / 100.6:.0%} | {0.53 * 1:.3f} |"
