"""Attribute groups and parameter batches written at once: stored, visible to the live trial, refused whole once
finished; on SQLite and PostgreSQL in one statement however many values, on PostgreSQL in autocommit (no BEGIN and
COMMIT round trips)."""
from __future__ import annotations

import uuid

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError

from nas.study.trial_writes import batched_params, set_system_attrs, set_user_attrs
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


def test_a_trial_opened_by_its_storage_id_is_written_the_same_way(study):
    """As a Ray trial opens the trial the driver reserved (it holds no live ``optuna.Trial``)."""
    trial = study.ask()
    set_user_attrs(StoredTrial(study._storage, trial._trial_id, trial.number), {"reason": "x", "killed": True})
    assert stored_attrs(study, trial.number) == {"reason": "x", "killed": True}


def test_a_finished_trial_refuses_the_whole_group(study):
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_user_attrs(trial, {"a": 1, "b": 2})
    assert stored_attrs(study, trial.number) == {}


def autocommit_on_postgresql(study: optuna.Study) -> str | None:
    return "AUTOCOMMIT" if study._storage._backend.engine.name == "postgresql" else None


def test_a_group_costs_one_statement_however_many_attributes(study):
    trial = study.ask()
    statements = counted(study)
    set_user_attrs(trial, {f"a{i}": i for i in range(20)})
    assert statements == [("INSERT", autocommit_on_postgresql(study))], statements
    assert stored_attrs(study, trial.number) == {f"a{i}": i for i in range(20)}


def test_system_attributes_are_written_the_same_way(study):
    """What the samplers read (NSGA-II's generation, the constraint violation) goes through the same statement."""
    trial = study.ask()
    statements = counted(study)
    set_system_attrs(study._storage, trial._trial_id, {"constraints": [0.5], "nsga2:generation": 3})
    assert statements == [("INSERT", autocommit_on_postgresql(study))], statements
    fresh = optuna.load_study(study_name=study.study_name, storage=open_storage(study._storage._backend.url))
    assert fresh.get_trials(deepcopy=False)[trial.number].system_attrs == {"constraints": [0.5], "nsga2:generation": 3}
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_system_attrs(study._storage, trial._trial_id, {"constraints": [0.0]})


def draw(trial: optuna.Trial, count: int = 20) -> dict:
    return {f"p{i}": trial.suggest_int(f"p{i}", 0, 9) if i % 2 else trial.suggest_categorical(f"p{i}", ["a", "b"])
            for i in range(count)}


def counted(study: optuna.Study) -> list[tuple[str, str | None]]:
    """(first word, isolation level) of each SQL statement the study's engine runs from now on."""
    statements: list[tuple[str, str | None]] = []
    sqlalchemy.event.listen(study._storage._backend.engine, "before_cursor_execute", lambda connection, _, sql, *__:
                            statements.append((sql.split()[0], connection.get_execution_options().get("isolation_level"))))
    return statements


def test_parameters_drawn_in_a_batch_are_stored_at_its_end_in_one_statement(study):
    first = study.ask()
    with batched_params(first):
        draw(first)  # the first trial: each name's distribution is checked against the storage once
    study.tell(first, 1.0)
    trial = study.ask()
    statements = counted(study)
    with batched_params(trial):
        values = draw(trial)
        assert trial.params == values  # the trial sees its values at once
        assert {word for word, _ in statements} <= {"SELECT"}  # nothing written yet (the sampler reads the study)
        inside = len(statements)
    assert statements[inside:] == [("INSERT", autocommit_on_postgresql(study))]
    fresh = optuna.load_study(study_name=study.study_name, storage=open_storage(study._storage._backend.url))
    assert fresh.get_trials(deepcopy=False)[trial.number].params == values
    assert fresh.get_trials(deepcopy=False)[trial.number].distributions == trial.distributions


def test_a_batch_refuses_a_distribution_the_study_stored_differently(study):
    other = study.ask()
    other.suggest_int("p1", 0, 9)
    study.tell(other, 1.0)
    fresh = optuna.load_study(study_name=study.study_name, storage=open_storage(study._storage._backend.url))
    trial = fresh.ask()  # a new process's cache: the stored distribution is read from the storage
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        with batched_params(trial):
            trial.suggest_categorical("p1", ["a", "b"])


def test_what_was_drawn_before_an_error_is_stored(study):
    trial = study.ask()
    with pytest.raises(RuntimeError):
        with batched_params(trial):
            trial.suggest_float("x", 0, 1)
            raise RuntimeError("the genome was impossible")
    fresh = optuna.load_study(study_name=study.study_name, storage=open_storage(study._storage._backend.url))
    assert list(fresh.get_trials(deepcopy=False)[trial.number].params) == ["x"]


def test_a_finished_trial_refuses_a_batch(study):
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        with batched_params(trial):
            trial._cached_frozen_trial.state = optuna.trial.TrialState.RUNNING  # as a worker swept meanwhile sees it
            trial.suggest_float("x", 0, 1)


def test_an_in_memory_study_keeps_optunas_writes():
    study = optuna.create_study()
    trial = study.ask()
    with batched_params(trial):
        trial.suggest_float("x", 0, 1)
        assert study.trials[0].params == trial.params  # written at once: nothing batched
