"""A worker's trial cache synced by state: it ends with what Optuna's own cache holds for every finished trial,
reads a running trial again only when its state changes, builds trials as Optuna's storage does, and the stale-trial
sweep still sees fresh heartbeats."""
from __future__ import annotations

import random
import time
import uuid

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from nas.study.records import write
from nas.study.storage import fail_stale_trials, open_storage
from nas.study.changed_reads import read_whole
from nas.study.trial_cache import StateSyncedCache, state_synced


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/a.db"
        return
    yield request.getfixturevalue("postgres_url")


def handles(url: str) -> tuple[optuna.Study, optuna.Study, optuna.Study]:
    """(a writer, a reader through Optuna's cache, a reader through the state-synced cache) of one new study."""
    name = f"cache-{uuid.uuid4().hex[:8]}"
    writer = optuna.create_study(study_name=name, storage=open_storage(url), directions=["maximize", "minimize"])
    stock = optuna.load_study(study_name=name, storage=open_storage(url))
    synced = optuna.load_study(study_name=name, storage=state_synced(open_storage(url)))
    assert isinstance(synced._storage, StateSyncedCache)
    return writer, stock, synced


def content(trial: optuna.trial.FrozenTrial) -> tuple:
    return (trial.number, trial.state, trial.values, trial.params, trial.user_attrs, trial.system_attrs)


def test_finished_trials_match_optunas_cache_through_random_changes(url):
    writer, stock, synced = handles(url)
    rng, running = random.Random(0), []
    try:
        for step in range(60):
            move = rng.random()
            if move < 0.4 or not running:
                trial = writer.ask()
                trial.suggest_int("x", 0, 9)
                running.append(trial)
            elif move < 0.7:
                write(rng.choice(running), heartbeat=time.time(), epochs=step)  # a running trial changes, same state
            else:
                trial = running.pop(rng.randrange(len(running)))
                if rng.random() < 0.5:
                    writer.tell(trial, [rng.random(), float(step)])
                else:
                    writer.tell(trial, state=TrialState.PRUNED)
            if step % 7 == 0:  # the readers look now and then, as workers do
                for reader in (stock, synced):
                    reader.get_trials(deepcopy=False)
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        assert [content(t) for t in synced.get_trials(deepcopy=False, states=finished)] == \
            [content(t) for t in stock.get_trials(deepcopy=False, states=finished)]
        assert [(t.number, t.state) for t in synced.get_trials(deepcopy=False)] == \
            [(t.number, t.state) for t in stock.get_trials(deepcopy=False)]
    finally:
        optuna.delete_study(study_name=writer.study_name, storage=writer._storage)


def test_a_running_trial_is_read_again_only_when_its_state_changes(url):
    writer, _, synced = handles(url)
    try:
        trial = writer.ask()
        synced.get_trials(deepcopy=False)  # seen running
        write(trial, heartbeat=time.time())
        statements: list[str] = []
        engine = synced._storage._backend.engine
        listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute: the SQL text)
        sqlalchemy.event.listen(engine, "before_cursor_execute", listener)
        try:
            synced.get_trials(deepcopy=False)
            assert len(statements) == 1 and "FROM trials" in statements[0]  # its state only
            writer.tell(trial, [0.5, 1.0])
            assert synced.get_trials(deepcopy=False)[0].user_attrs["heartbeat"] > 0  # finished: read whole
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", listener)
    finally:
        optuna.delete_study(study_name=writer.study_name, storage=writer._storage)


def test_the_stale_sweep_reads_heartbeats_past_the_cache(url):
    """A trial stamped by another host, seen by this worker's cache with an old heartbeat, beats again: the sweep
    must not take it for dead."""
    writer, _, synced = handles(url)
    try:
        trial = writer.ask()
        write(trial, host="another-host", pid=1, heartbeat=time.time() - 3600)
        synced.get_trials(deepcopy=False)  # cached with the old heartbeat
        write(trial, heartbeat=time.time())
        assert fail_stale_trials(synced, stale_after_s=600) == []
        assert writer.get_trials(deepcopy=False)[0].state == TrialState.RUNNING
        write(trial, heartbeat=time.time() - 3600)
        assert fail_stale_trials(synced, stale_after_s=600) == [trial.number]
    finally:
        optuna.delete_study(study_name=writer.study_name, storage=writer._storage)


def canonical(trial: optuna.trial.FrozenTrial) -> str:
    """Every field of the trial, dicts in key order, floats by repr (so NaN equals NaN)."""
    return repr({key: sorted(value.items(), key=lambda item: repr(item[0])) if isinstance(value, dict) else value
                 for key, value in sorted(vars(trial).items())})


@pytest.fixture
def new_york():
    """Local time five hours off UTC for the test's duration."""
    import os

    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_trials_are_built_as_optunas_storage_builds_them(url, new_york):
    """Every kind of distribution, infinite and NaN values, every state, attributes of every JSON kind; times in a
    zone that is not UTC (stored as naive UTC, given as naive local time)."""
    writer, _, _ = handles(url)
    try:
        for number in range(12):
            trial = writer.ask()
            trial.suggest_int("layers", 1, 4)
            trial.suggest_int("width", 8, 512, log=True)
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
            trial.suggest_categorical("act", ["relu", None, True, 3, 2.5])
            trial.set_user_attr("curve", [{"epoch": 1, "val": 0.5}, {"epoch": 2, "val": None}])
            trial.set_user_attr("name", f"t{number}")
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [float(number % 3)])
            for step, value in enumerate([0.1, float("nan"), float("inf"), float("-inf")][:number % 5]):
                trial.storage.set_trial_intermediate_value(trial._trial_id, step, value)
            ending = number % 4
            if ending == 0:
                writer.tell(trial, [float("inf") if number == 4 else 0.5 + number,
                                    float("-inf") if number == 8 else 3.0])
            elif ending == 1:
                writer.tell(trial, state=TrialState.PRUNED)
            elif ending == 2:
                writer.tell(trial, state=TrialState.FAIL)
        writer.enqueue_trial({"layers": 2})  # WAITING
        backend = writer._storage._backend
        ours = read_whole(backend.engine, [t._trial_id for t in writer.get_trials(deepcopy=False)])
        theirs = backend._get_trials(writer._study_id, states=None, included_trial_ids=set(), trial_id_greater_than=-1)
        assert len(ours) == 13 and [canonical(t) for t in ours] == [canonical(t) for t in theirs]
        assert {t.state for t in ours} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                           TrialState.WAITING}
        synced = state_synced(open_storage(url))  # one trial at a time, as ask and tell read the trial they hold
        assert [canonical(synced.get_trial(t._trial_id)) for t in theirs] == [canonical(t) for t in theirs]
        with pytest.raises(KeyError):
            synced.get_trial(max(t._trial_id for t in theirs) + 1000)
    finally:
        optuna.delete_study(study_name=writer.study_name, storage=writer._storage)


@pytest.mark.parametrize("after", range(1, 7))
def test_a_whole_read_is_one_snapshot_whatever_finishes_during_it(url, after):
    """A trial told COMPLETE while a worker reads it whole is read either running or complete with its values,
    never complete without them (read table by table, the values could be read before the tell and the state
    after it; such a trial stayed cached and broke every later NSGA-II parent selection of that worker: 80% of a
    2-worker simulated study failed)."""
    writer, _, synced = handles(url)
    trial = writer.ask()
    trial.suggest_int("x", 0, 9)
    engine = synced._storage._backend.engine
    executed = [0]

    def tell_after_some_statements(*_):
        executed[0] += 1
        if executed[0] == after:
            writer.tell(trial, [0.5, 3.0])

    sqlalchemy.event.listen(engine, "after_cursor_execute", tell_after_some_statements)
    try:
        (read,) = read_whole(engine, [trial._trial_id])
    finally:
        sqlalchemy.event.remove(engine, "after_cursor_execute", tell_after_some_statements)
    assert (read.state, read.values) in [(TrialState.RUNNING, None), (TrialState.COMPLETE, [0.5, 3.0])]
    assert read.params == {"x": trial.params["x"]}
