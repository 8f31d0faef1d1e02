"""The study ledger (incremental reads) against a full read of a real SQLite study, after every step of a random
history: trials that finish out of order, fail, are killed, copy twins, reach rungs, carry warm-start names."""
from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from nas.scheduling.pareto import dominates, oriented
from nas.study.ledger import Ledger
from nas.study.records import TrialRecord, write, write_rung
from nas.study.storage import open_storage

STATES = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]


def expected(study: optuna.Study) -> dict:
    """Every index the ledger keeps, computed from scratch from all trials, the way each is defined."""
    directions = [d.name.lower() for d in study.directions]
    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    holds = [r for r in records if r.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    trained = [(t, TrialRecord.of(t)) for t in study.get_trials(deepcopy=False) if TrialRecord.of(t).trained]
    points = {t.number: oriented(t.values, directions) for t, _ in trained}
    front = sorted(((r.params, t.number) for t, r in trained
                    if not any(dominates(q, points[t.number]) for q in points.values())))
    sizes = {t.number: (r.val_accuracy, -r.params) for t, r in trained}  # accuracy up, params down
    size_front = sorted(((r.params, t.number) for t, r in trained
                         if not any(dominates(q, sizes[t.number]) for q in sizes.values())))
    counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
    for r in records:
        counts[{"fail": "failed"}.get(r.shown_state, r.shown_state)] += 1
    return {
        "in_budget": sum(r.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
                         or (r.state == TrialState.FAIL and not r.killed) for r in records),
        "counts": counts,
        "zoo": {r.zoo for r in records if r.zoo},
        "holders": {key: min((r.number for r in holds if r.twin_key == key), default=None) for key in "abc"},
        "rung": {epoch: {r.number: r.rungs[epoch] for r in holds if epoch in r.rungs} for epoch in (2, 6)},
        "front": [number for _, number in front],
        "size_front": [number for _, number in size_front],
    }


def observed(book: Ledger) -> dict:
    book.refresh()
    holder = {key: book.holder(key, exclude=-1) for key in "abc"}
    return {
        "in_budget": book.in_budget(),
        "counts": book.state_counts(),
        "zoo": book.zoo_names(),
        "holders": {key: (t.number if t is not None else None) for key, t in holder.items()},
        "rung": {epoch: {n: p[0] for n, p in book.rung_points(epoch, -1, "acc", lambda a, m: (a,)).items()}
                 for epoch in (2, 6)},
        "front": [t.number for t in book.front],
        "size_front": [t.number for t in book.size_front],
    }


@pytest.mark.parametrize("seed, directions, kind", [(0, ["maximize", "minimize"], "sqlite"),
                                                    (1, ["maximize", "minimize"], "sqlite"),
                                                    (2, ["maximize", "minimize"], "sqlite"),
                                                    (3, ["maximize"], "sqlite"),
                                                    (4, ["maximize", "minimize"], "memory")])
def test_the_ledger_equals_a_full_read_after_every_step_of_a_random_history(tmp_path, seed, directions, kind):
    """With one objective (accuracy) the study's front is its most accurate trials, while ``size_front`` (the
    hypervolume's points) is still accuracy against parameters. SQLite takes the ledger's SQL reads (states, then
    indexed attributes and finished trials' values); an in-memory storage the whole-trial path."""
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path}/ledger.db"
    memory = optuna.storages.InMemoryStorage()
    writer = optuna.create_study(study_name="s", storage=open_storage(url) if kind == "sqlite" else memory,
                                 directions=directions)
    reader = optuna.load_study(study_name="s", storage=open_storage(url) if kind == "sqlite" else memory)
    book = Ledger(reader)
    running: list[optuna.Trial] = []
    for _ in range(60):
        if running and rng.random() < 0.5:  # finish a random running trial: out of creation order
            trial = running.pop(rng.randrange(len(running)))
            state = rng.choice(STATES)
            if state == TrialState.FAIL and rng.random() < 0.5:
                write(trial, killed=True)
            if rng.random() < 0.2:
                write(trial, infeasible="params exceed max_params")
            accuracy = rng.choice([0.5, 0.6, 0.7, rng.random()])
            if state == TrialState.COMPLETE:
                write(trial, val_accuracy=accuracy)
                if rng.random() < 0.2:
                    write(trial, duplicate_of=0)
                writer.tell(trial, [accuracy, TrialRecord.of(trial).params][:len(directions)])
            else:
                writer.tell(trial, state=state)
        else:
            trial = writer.ask()
            write(trial, params=rng.choice([100, 200, 300, rng.randint(1, 1000)]), flops=10)
            if rng.random() < 0.3:
                write(trial, zoo=rng.choice(["lenet5", "perm-cnn"]))
            if rng.random() < 0.6:
                write(trial, twin_key=rng.choice("abc"))
            for epoch in (2, 6):
                if rng.random() < 0.5:
                    write_rung(trial, epoch, rng.random())
            running.append(trial)
        if rng.random() < 0.7:  # the reader looks at random moments, so it sees several changes at once too
            assert observed(book) == expected(reader)
    assert observed(book) == expected(reader)
    tiny = writer.ask()  # a one-parameter, barely accurate net: on the size front, but not the best accuracy
    write(tiny, params=1, flops=1, val_accuracy=0.001)
    writer.tell(tiny, [0.001, 1][:len(directions)])
    assert observed(book) == expected(reader)
    assert tiny.number in [t.number for t in book.size_front]
    assert (tiny.number in [t.number for t in book.front]) == (len(directions) == 2)
    from_scratch = expected(reader)  # tables, plots and exports: accuracy against params for one objective
    assert [t.number for t in book.shown_front()] == from_scratch["size_front" if len(directions) == 1 else "front"]


def test_rung_points_exclude_the_asking_trial_and_convert_each_finished_point_once(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url), directions=["maximize", "minimize"])
    for accuracy in (0.1, 0.2):
        trial = study.ask()
        write(trial, params=10)
        write_rung(trial, 2, accuracy)
        study.tell(trial, state=TrialState.PRUNED)
    calls = []
    book = Ledger(study).refresh()

    def to_point(accuracy, metrics):
        calls.append(accuracy)
        return (accuracy, -metrics["params"])

    assert book.rung_points(2, exclude=1, key="k", to_point=to_point) == {0: (0.1, -10.0)}
    assert book.rung_points(2, exclude=-1, key="k", to_point=to_point) == {0: (0.1, -10.0), 1: (0.2, -10.0)}
    assert sorted(calls) == [0.1, 0.2]  # the second call converted nothing again


def test_a_deleted_study_takes_its_ledger_with_it(tmp_path):
    import gc

    from nas.study.ledger import _LEDGERS, ledger

    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/ledger.db"))
    ledger(study)
    before = len(_LEDGERS)
    del study
    gc.collect()
    assert len(_LEDGERS) == before - 1


def test_a_running_twin_holder_comes_back_whole_while_the_ledger_skips_running_curves(tmp_path):
    """The ledger keeps of a running trial what its indexes need (twin key, rungs, sizes), not the curve every
    epoch rewrites; the holder it hands to a waiting twin is read whole: its worker and heartbeat say if it lives."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    writer = optuna.create_study(study_name="s", storage=open_storage(url), directions=["maximize", "minimize"])
    running = writer.ask()
    write(running, params=50, twin_key="a", curve=[{"epoch": 1, "val_accuracy": 0.4}], heartbeat=123.0, pid=7)
    write_rung(running, 2, 0.4)
    reader = optuna.load_study(study_name="s", storage=open_storage(url))
    book = Ledger(reader).refresh()
    (record,) = book.unfinished.values()
    assert (record.number, record.twin_key, record.params, record.rungs) == (running.number, "a", 50, {2: 0.4})
    assert record.curve == [] and record.heartbeat is None  # not read
    twin = book.holder("a", exclude=-1)
    assert twin.state == TrialState.RUNNING and TrialRecord.of(twin).heartbeat == 123.0
    assert TrialRecord.of(twin).curve == [{"epoch": 1, "val_accuracy": 0.4}]
    write(running, val_accuracy=0.5)
    writer.tell(running, [0.5, 50])
    assert book.refresh().unfinished == {} and book.holder("a", exclude=-1).state == TrialState.COMPLETE


def test_objective_values_read_by_sql_equal_optunas_including_infinities(tmp_path):
    from nas.study.changed_reads import read_values
    from nas.study.storage import storage_trial_id

    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/ledger.db"),
                                directions=["maximize", "minimize"])
    for values in ([0.5, 3.0], [float("inf"), -2.5], [0.25, float("-inf")]):
        study.tell(study.ask(), values)
    study.tell(study.ask(), state=TrialState.PRUNED)  # no values
    trials = study.get_trials(deepcopy=False)
    read = read_values(study, [storage_trial_id(t) for t in trials])
    assert read == {storage_trial_id(t): tuple(t.values) for t in trials if t.values is not None}
    assert len(read) == 3
