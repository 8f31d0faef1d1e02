"""Attribute groups written in one transaction: stored, visible to the live trial, refused whole once finished."""
from __future__ import annotations

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError

from nas.study.attr_writes import set_user_attrs
from nas.study.storage import StoredTrial, open_storage


@pytest.fixture()
def study(tmp_path):
    return optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/a.db"))


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
    set_user_attrs(StoredTrial.by_number(study._storage, "s", trial.number), {"reason": "x", "killed": True})
    assert stored_attrs(study, trial.number) == {"reason": "x", "killed": True}


def test_a_finished_trial_refuses_the_whole_group(study):
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_user_attrs(trial, {"a": 1, "b": 2})
    assert stored_attrs(study, trial.number) == {}
