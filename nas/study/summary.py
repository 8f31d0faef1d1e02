"""Plain data about a study read from its storage: counts by state, the Pareto set, the baseline front, the headline.

``nas status``, the progress bar and the report all read these; nothing here draws or prints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.scheduling.pareto import hypervolume_2d, oriented, pareto_set
from nas.study.records import TrialRecord, read_study

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
    r = TrialRecord.of(trial)
    return TrialRow(r.number, r.shown_state, r.val_accuracy, r.test_accuracy, r.params, r.flops, r.epochs_done,
                    r.summary, r.family, r.reason, r.zoo)


def trained(trial: FrozenTrial) -> bool:
    """COMPLETE at full budget and actually trained (not infeasible, not a copy of a twin)."""
    return TrialRecord.of(trial).trained


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
    for t in trials:
        state = TrialRecord.of(t).shown_state
        key = {"fail": "failed", "waiting": "running"}.get(state, state)
        counts[key] = counts.get(key, 0) + 1
    return counts


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated trained trials, by increasing parameter count."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trained(t)]
    directions = [d.name.lower() for d in study.directions]
    points = {t.number: oriented(t.values, directions) for t in trials}
    keep = set(pareto_set(points))
    return sorted((t for t in trials if t.number in keep), key=lambda t: (TrialRecord.of(t).params or 0, t.number))


def hypervolume(trials: list[FrozenTrial], params_reference: float) -> float:
    """Area dominated in (val accuracy, -log10 params), from (0, -log10 reference)."""
    records = [TrialRecord.of(t) for t in trials]
    points = [(r.val_accuracy, -math.log10(max(1, r.params))) for r in records]
    return hypervolume_2d(points, (0.0, -math.log10(params_reference)))


def params_reference(study: optuna.Study) -> float:
    config = read_study(study, "config", {})
    return float((config.get("constraints") or {}).get("max_params") or DEFAULT_PARAMS_REFERENCE)


class Scored(Protocol):
    """A finished trial as a row or a plot point: its number, val accuracy and size."""

    number: int
    val_accuracy: Any
    params: Any


@dataclass(frozen=True)
class Headline:
    """Whether (and by how much) the smallest searched genome that beats the best dense baseline is smaller.

    Best dense = highest val accuracy (fewer parameters on a tie); a genome beats it with higher val accuracy
    and fewer parameters; of those, the smallest (the more accurate on a tie) is named.
    """

    text: str
    best_dense: Any | None        # the row or point given
    smallest_beating: Any | None
    size_ratio: float | None      # dense params / beating params


def headline(front: Sequence[Scored], baseline_front: Sequence[Scored]) -> Headline:
    """The one-line verdict ``nas status`` prints and the report shows (rows or points, the same rule)."""
    if not baseline_front:
        return Headline("No dense baseline in this storage to compare with.", None, None, None)
    dense = max(baseline_front, key=lambda r: (r.val_accuracy, -r.params))
    dense_text = f"the best dense baseline ({dense.val_accuracy:.1%} with {dense.params:,} params)"
    beating = [r for r in front if r.val_accuracy > dense.val_accuracy and r.params < dense.params]
    if not beating:
        return Headline(f"No searched genome beats {dense_text} with fewer parameters yet.", dense, None, None)
    best = min(beating, key=lambda r: (r.params, -r.val_accuracy))
    ratio = dense.params / best.params
    fraction = f"1/{ratio:.0f}" if ratio >= 2 else f"1/{ratio:.2f}"
    return Headline(f"Trial {best.number} ({best.val_accuracy:.1%}) beats {dense_text} with {fraction} of its "
                    f"parameters ({best.params:,}).", dense, best, ratio)


def study_summary(study: optuna.Study, baseline: optuna.Study | None = None) -> dict:
    """Everything ``nas status --json`` prints."""
    trials = study.get_trials(deepcopy=False)
    front = pareto_trials(study)
    reference = params_reference(study)
    rows = [trial_row(t) for t in front]
    baseline_rows = [trial_row(t) for t in pareto_trials(baseline)] if baseline is not None else []
    data = {
        "study": study.study_name,
        "trials": state_counts(trials),
        "pareto": [r.to_dict() for r in rows],
        "hypervolume": hypervolume(front, reference),
        "baseline": [r.to_dict() for r in baseline_rows],
        "headline": headline(rows, baseline_rows).text,
        "failures": [{"number": t.number, "reason": TrialRecord.of(t).reason or "unknown"}
                     for t in trials if t.state == TrialState.FAIL],
    }
    if baseline is not None:
        data["baseline_study"] = baseline.study_name
    return data
