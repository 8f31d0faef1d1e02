"""Plain data about a study read from its storage: counts by state, the Pareto set, the baseline front.

``nas status``, the progress bar and the report all read these; nothing here draws or prints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.pareto import hypervolume_2d, pareto_set

DEFAULT_PARAMS_REFERENCE = 1e7  # hypervolume's worst size when a study sets no max_params


@dataclass(frozen=True)
class TrialRow:
    """One finished trial as the user sees it."""

    number: int
    state: str
    val_accuracy: float | None
    test_accuracy: float | None
    params: int | None
    flops: int | None
    epochs: int
    summary: str
    family: str
    reason: str | None
    zoo: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def trial_row(trial: FrozenTrial) -> TrialRow:
    a = trial.user_attrs
    state = "infeasible" if "infeasible" in a else trial.state.name.lower()
    return TrialRow(trial.number, state, a.get("val_accuracy"), a.get("test_accuracy"), a.get("params"),
                    a.get("flops"), int(a.get("epochs", len(a.get("curve", [])))), a.get("summary", ""),
                    a.get("family", ""), a.get("reason"), a.get("zoo"))


def trained(trial: FrozenTrial) -> bool:
    """COMPLETE at full budget and actually trained (not infeasible, not a copy of a twin)."""
    a = trial.user_attrs
    return trial.state == TrialState.COMPLETE and "infeasible" not in a and "duplicate_of" not in a \
        and a.get("val_accuracy") is not None


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
    for t in trials:
        row_state = "infeasible" if "infeasible" in t.user_attrs else t.state.name.lower()
        key = {"fail": "failed", "waiting": "running"}.get(row_state, row_state)
        counts[key] = counts.get(key, 0) + 1
    return counts


def oriented_values(trial: FrozenTrial, directions: list[optuna.study.StudyDirection]) -> tuple[float, ...]:
    return tuple(v if d == optuna.study.StudyDirection.MAXIMIZE else -v for v, d in zip(trial.values, directions))


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated trained trials, by increasing parameter count."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trained(t)]
    points = {t.number: oriented_values(t, study.directions) for t in trials}
    keep = set(pareto_set(points))
    return sorted((t for t in trials if t.number in keep), key=lambda t: (t.user_attrs.get("params", 0), t.number))


def hypervolume(trials: list[FrozenTrial], params_reference: float) -> float:
    """Area dominated in (val accuracy, -log10 params), from (0, -log10 reference)."""
    points = [(t.user_attrs["val_accuracy"], -math.log10(max(1, t.user_attrs["params"]))) for t in trials]
    return hypervolume_2d(points, (0.0, -math.log10(params_reference)))


def params_reference(study: optuna.Study) -> float:
    config = study.user_attrs.get("config", {})
    return float((config.get("constraints") or {}).get("max_params") or DEFAULT_PARAMS_REFERENCE)


def baseline_study_name(study: optuna.Study) -> str | None:
    return study.user_attrs.get("baseline_study")


def study_summary(study: optuna.Study, baseline: optuna.Study | None = None) -> dict:
    """Everything ``nas status --json`` prints."""
    trials = study.get_trials(deepcopy=False)
    front = pareto_trials(study)
    reference = params_reference(study)
    data = {
        "study": study.study_name,
        "trials": state_counts(trials),
        "pareto": [trial_row(t).to_dict() for t in front],
        "hypervolume": hypervolume(front, reference),
        "baseline": [],
        "failures": [{"number": t.number, "reason": t.user_attrs.get("reason", "unknown")}
                     for t in trials if t.state == TrialState.FAIL],
    }
    if baseline is not None:
        data["baseline_study"] = baseline.study_name
        data["baseline"] = [trial_row(t).to_dict() for t in pareto_trials(baseline)]
    return data
