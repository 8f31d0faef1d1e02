"""Which choices matter: Optuna parameter importances for accuracy and the choices of every trained trial."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from nas.study.records import read_study

MIN_IMPORTANCE_TRIALS = 5  # below this PED-ANOVA's top quantile is one or two trials: the ranking means nothing
MAX_AXES = 8  # parallel-coordinate axes besides accuracy; more are unreadable
ABSENT = "—"  # a conditional choice the trial did not make (e.g. stage 3 of a 2-stage network)


@dataclass(frozen=True)
class Axis:
    """One parallel-coordinates axis: numeric values, or categories mapped to integer ticks."""

    name: str
    values: list[float]
    tick_values: list[int] | None = None  # categorical axes only
    tick_labels: list[str] | None = None


@dataclass(frozen=True)
class Choices:
    importances: dict[str, float]  # param -> share of importance, most important first; empty with a note
    note: str | None
    axes: list[Axis]  # the most important params (or the most common ones), then val accuracy
    trials: list[int]


def _accuracy_index(study: optuna.Study) -> int:
    metrics = read_study(study, "metrics") or ["val_accuracy"]
    return metrics.index("val_accuracy") if "val_accuracy" in metrics else 0


def param_importances(study: optuna.Study, trials: list[FrozenTrial]) -> tuple[dict[str, float], str | None]:
    """PED-ANOVA importances (Optuna's default, handles conditional params) for high val accuracy."""
    sampled = [t for t in trials if t.params]
    if len(sampled) < MIN_IMPORTANCE_TRIALS:
        return {}, (f"Parameter importances need at least {MIN_IMPORTANCE_TRIALS} trained trials with sampled "
                    f"choices; this study has {len(sampled)} so far.")
    index = _accuracy_index(study)
    view = optuna.create_study(directions=study.directions)  # in memory: only the trained trials count
    view.add_trials(sampled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # PED-ANOVA ranks for *low* target values, hence the minus sign
            importances = optuna.importance.get_param_importances(view, target=lambda t: -t.values[index])
        except (ValueError, RuntimeError) as exc:
            return {}, f"Optuna could not rank the parameters: {exc}"
    equal = [str(w.message) for w in caught if "will be equal" in str(w.message)]
    if equal:
        return {}, f"Optuna could not rank the parameters yet: {equal[0]}"
    return dict(importances), None


def _axis(name: str, rows: list[dict], distributions: dict) -> Axis:
    values = [row.get(name) for row in rows]
    numeric = not isinstance(distributions.get(name), CategoricalDistribution)
    if numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Axis(name, [float(v) for v in values])
    labels = sorted({ABSENT if v is None else str(v) for v in values}, key=lambda s: (s == ABSENT, _sort_key(s)))
    index = {label: i for i, label in enumerate(labels)}
    return Axis(name, [float(index[ABSENT if v is None else str(v)]) for v in values], list(range(len(labels))),
                labels)


def _sort_key(label: str) -> tuple:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def choices_data(study: optuna.Study, trials: list[FrozenTrial]) -> Choices:
    """Importances plus parallel-coordinate axes over the trained trials that sampled choices."""
    importances, note = param_importances(study, trials)
    sampled = [t for t in trials if t.params]
    if importances:
        names = list(importances)[:MAX_AXES]
    else:  # no ranking: the choices most trials made
        counts: dict[str, int] = {}
        for t in sampled:
            for name in t.params:
                counts[name] = counts.get(name, 0) + 1
        names = sorted(counts, key=lambda n: (-counts[n], n))[:MAX_AXES]
    distributions = {name: d for t in sampled for name, d in t.distributions.items()}
    rows = [t.params for t in sampled]
    axes = [_axis(name, rows, distributions) for name in names]
    index = _accuracy_index(study)
    if sampled:
        axes.append(Axis("val accuracy", [float(t.values[index]) for t in sampled]))
    return Choices(importances, note, axes, [t.number for t in sampled])
