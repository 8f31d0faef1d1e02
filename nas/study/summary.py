"""Plain data about a study read from its storage: counts by state, the Pareto set, the baseline front, the headline.

``nas status``, the progress bar and the report all read these; nothing here draws or prints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.scheduling.pareto import hypervolume_2d
from nas.search.samplers import generations
from nas.study.ledger import ledger, shown_count_key
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
    val_samples: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def trial_row(trial: FrozenTrial) -> TrialRow:
    r = TrialRecord.of(trial)
    return TrialRow(r.number, r.shown_state, r.val_accuracy, r.test_accuracy, r.params, r.flops, r.epochs_done,
                    r.summary, r.family, r.reason, r.zoo, r.val_samples)


def trained(trial: FrozenTrial) -> bool:
    """COMPLETE at full budget and actually trained (not infeasible, not a copy of a twin)."""
    return TrialRecord.of(trial).trained


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by the state the user reads: complete, pruned, failed, infeasible, running."""
    counts = {"complete": 0, "pruned": 0, "failed": 0, "infeasible": 0, "running": 0}
    for t in trials:
        key = shown_count_key(TrialRecord.of(t))
        counts[key] = counts.get(key, 0) + 1
    return counts


def screen_counts(trials: list[FrozenTrial]) -> dict[str, int] | None:
    """How many trials ran ``pruner.screen`` and how many went on to their full fit (None: nothing screened); an
    asynchronous rung keeps more than ``1/reduction_factor`` when later draws screen better, which this shows."""
    records = [TrialRecord.of(t) for t in trials]
    screened = [r for r in records if r.screen is not None and r.duplicate_of is None]
    if not screened:
        return None
    return {"screened": len(screened), "stopped": sum(r.stopped_at_screen for r in screened)}


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated trained trials, by increasing parameter count (kept by the study's ledger as trials
    finish, so a poll at 10,000 trials does not rank them all again); see :meth:`Ledger.shown_front`."""
    return ledger(study).shown_front()


def hypervolume(trials: list[FrozenTrial], params_reference: float) -> float:
    """Area dominated in (val accuracy, -log10 params), from (0, -log10 reference)."""
    records = [TrialRecord.of(t) for t in trials]
    points = [(r.val_accuracy, -math.log10(max(1, r.params))) for r in records]
    return hypervolume_2d(points, (0.0, -math.log10(params_reference)))


def params_reference(study: optuna.Study) -> float:
    config = read_study(study, "config", {})
    return float((config.get("constraints") or {}).get("max_params") or DEFAULT_PARAMS_REFERENCE)


class Scored(Protocol):
    """A finished trial as a row or a plot point: its number, accuracies, size and validation split size."""

    number: int
    val_accuracy: Any
    test_accuracy: Any
    params: Any
    val_samples: Any


def standard_error(accuracy: float, samples: int | None) -> float:
    """Binomial standard error of an accuracy measured on ``samples`` examples (0 when the size is unknown)."""
    return math.sqrt(accuracy * (1 - accuracy) / samples) if samples else 0.0


@dataclass(frozen=True)
class Headline:
    """How the searched front compares with the best dense baseline, on validation, with its uncertainty.

    Best dense = highest val accuracy (fewer parameters on a tie). Among front trials with fewer parameters, one
    *beats* it when ahead on validation by more than the combined standard error sqrt(se_trial^2 + se_dense^2),
    and *matches* it when within that error either way; the smallest such trial (the more accurate on a tie) is
    named, beating before matching. Test accuracies are shown beside, never used to choose.
    """

    text: str
    best_dense: Any | None        # the row or point given
    smallest_beating: Any | None  # the trial named (beating or matching)
    size_ratio: float | None      # dense params / named trial's params
    verdict: str | None = None    # 'beats' | 'matches' | None


def simulated(study: optuna.Study) -> bool:
    """Whether the study ran with ``execution.simulate`` (synthetic learning curves, nothing trained)."""
    return bool(((read_study(study, "config", {}) or {}).get("execution") or {}).get("simulate"))


SIMULATED_PREFIX = "SIMULATED (synthetic learning curves, nothing was trained): "


def search_note(counts: dict[int, int]) -> str | None:
    """What NSGA-II did, in one line (None for other samplers): how many generations it bred, or a warning that it
    never left generation 0, whose trials are random draws."""
    if not counts:
        return None
    total = sum(counts.values())
    if max(counts) == 0:
        return (f"NSGA-II never bred: all {total} trials NSGA-II saw are generation 0 (spread start and random "
                "draws), as fewer trials completed than its population; set sampler.population_size lower or give the "
                "study more time")
    return f"NSGA-II bred generations 1-{max(counts)} ({total - counts.get(0, 0)} of {total} trials)"


def headline(front: Sequence[Scored], baseline_front: Sequence[Scored], is_simulated: bool = False) -> Headline:
    """The one-line verdict ``nas status`` prints and the report shows (rows or points, the same rule); a simulated
    study's verdict says so first."""
    found = _headline(front, baseline_front)
    if is_simulated:
        return Headline(SIMULATED_PREFIX + found.text, found.best_dense, found.smallest_beating, found.size_ratio,
                        found.verdict)
    return found


def _headline(front: Sequence[Scored], baseline_front: Sequence[Scored]) -> Headline:
    if not baseline_front:
        return Headline("No dense baseline in this storage to compare with.", None, None, None)
    dense = max(baseline_front, key=lambda r: (r.val_accuracy, -r.params))
    dense_se = standard_error(dense.val_accuracy, dense.val_samples)
    dense_text = f"the best dense baseline ({_pm(dense.val_accuracy, dense_se)} with {dense.params:,} params)"

    def margin(r: Scored) -> float:
        return math.hypot(standard_error(r.val_accuracy, r.val_samples), dense_se)

    smaller = [r for r in front if r.params < dense.params]
    named = {"beats": [r for r in smaller if r.val_accuracy - dense.val_accuracy > margin(r)],
             "matches": [r for r in smaller if abs(r.val_accuracy - dense.val_accuracy) <= margin(r)]}
    verdict = next((v for v in ("beats", "matches") if named[v]), None)
    if verdict is None:
        return Headline(f"No genome of the study with fewer parameters matches {dense_text} on validation yet.",
                        dense, None, None)
    best = min(named[verdict], key=lambda r: (r.params, -r.val_accuracy))
    ratio = dense.params / best.params
    fraction = f"1/{ratio:.0f}" if ratio >= 10 else f"1/{ratio:.1f}"
    se = standard_error(best.val_accuracy, best.val_samples)
    test = f"; test {_pct(best.test_accuracy)} vs {_pct(dense.test_accuracy)}" \
        if best.test_accuracy is not None or dense.test_accuracy is not None else ""
    zoo = getattr(best, "zoo", None)  # a warm start is not the search's find: say which model it is
    named_as = f"Trial {best.number} ({zoo}, a warm start; " if zoo else f"Trial {best.number} ("
    return Headline(f"{named_as}{_pm(best.val_accuracy, se)}) {verdict} {dense_text} on validation "
                    f"with {fraction} of its parameters ({best.params:,}){test}.", dense, best, ratio, verdict)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _pm(accuracy: float, se: float) -> str:
    return f"{accuracy:.1%}" + (f" ± {100 * se:.1f}" if se else "")


def study_summary(study: optuna.Study, baseline: optuna.Study | None = None) -> dict:
    """Everything ``nas status --json`` prints."""
    trials = study.get_trials(deepcopy=False)
    book = ledger(study)  # one read of what changed serves the front and the hypervolume
    front = book.shown_front()
    reference = params_reference(study)
    rows = [trial_row(t) for t in front]
    baseline_rows = [trial_row(t) for t in pareto_trials(baseline)] if baseline is not None else []
    by_generation = generations(trials)
    data = {
        "study": study.study_name,
        "trials": state_counts(trials),
        "pareto": [r.to_dict() for r in rows],
        "hypervolume": hypervolume(book.size_front, reference),  # accuracy vs params, whatever the objectives
        "baseline": [r.to_dict() for r in baseline_rows],
        "headline": headline(rows, baseline_rows, simulated(study)).text,
        "generations": by_generation,
        "search_note": search_note(by_generation),
        "failures": [{"number": t.number, "reason": TrialRecord.of(t).reason or "unknown"}
                     for t in trials if t.state == TrialState.FAIL],
        "screen": screen_counts(trials),
    }
    if baseline is not None:
        data["baseline_study"] = baseline.study_name
    return data
