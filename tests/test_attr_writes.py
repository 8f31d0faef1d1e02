"""Attribute groups written in one transaction: stored, visible to the live trial, refused whole once finished;
on SQLite and PostgreSQL in two statements however many attributes."""
from __future__ import annotations

import uuid

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError

from nas.study.attr_writes import set_user_attrs
from nas.study.storage import StoredTrial, open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def study(request, tmp_path):
    if request.param == "sqlite":
        yield optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/a.db"))
        return
    storage = open_storage(request.getfixturevalue("postgres_url"))
    name = f"attr-writes-{uuid.uuid4().hex[:8]}"
    yield optuna.create_study(study_name=name, storage=storage)
    optuna.delete_study(study_name=name, storage=storage)


def stored_attrs(study: optuna.Study, number: int) -> dict:
    fresh = optuna.load_study(study_name=study.study_name, storage=open_storage(study._storage._backend.url))
    return fresh.get_trials(deepcopy=False)[number].user_attrs


def test_a_group_is_stored_and_the_live_trial_sees_it(study):
    trial = study.ask()
    set_user_attrs(trial, {"params": 12, "curve": [{"epoch": 1}], "genome": "{}"})
    set_user_attrs(trial, {"params": 13, "seed": 4})  # an overwrite in a later group
    assert trial.user_attrs == {"params": 13, "curve": [{"epoch": 1}], "genome": "{}", "seed": 4}
    assert stored_attrs(study, trial.number) == trial.user_attrs


def test_a_trial_opened_by_number_is_written_the_same_way(study):
    trial = study.ask()
    set_user_attrs(StoredTrial.by_number(study._storage, study.study_name, trial.number), {"reason": "x", "killed": True})
    assert stored_attrs(study, trial.number) == {"reason": "x", "killed": True}


def test_a_finished_trial_refuses_the_whole_group(study):
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_user_attrs(trial, {"a": 1, "b": 2})
    assert stored_attrs(study, trial.number) == {}


def test_a_group_costs_two_statements_however_many_attributes(study):
    trial = study.ask()
    statements = []
    engine = study._storage._backend.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute: the SQL text)
    sqlalchemy.event.listen(engine, "before_cursor_execute", listener)
    try:
        set_user_attrs(trial, {f"a{i}": i for i in range(20)})
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 2, statements
    assert stored_attrs(study, trial.number) == {f"a{i}": i for i in range(20)}
