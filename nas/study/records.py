"""The trial record: every user attribute a trial carries, named and typed in one place.

Backends write through :func:`write` (an unknown name is a programming error, not a silent new column); reports,
export, status and the rung rule read through :meth:`TrialRecord.of`. The attributes:

- what was sampled: ``genome`` (JSON), ``genome_key``, ``summary``, ``family``, ``params``, ``flops``, ``zoo``
  (a warm-start model's name), ``lr`` (the learning rate it trained with), ``seed`` (its training seed),
  ``twin_key`` (genome key and training values: the pair this trial trains, see ``nas.execution.twins``);
- how training went: ``screen`` (the ``pruner.screen`` fit on less data: samples, epochs, val accuracy, seconds),
  ``curve`` (per-epoch dicts), ``epoch_s`` and ``epoch_on`` (its first epoch's own seconds, and the device and
  threads it ran on: what ``pruner.max_slowdown`` compares), ``epochs``, ``rung_<E>`` (val accuracy at rung
  epoch E; ``rung_0``: the screen's), ``val_accuracy``, ``val_samples`` (the validation split's size), ``test_accuracy``, ``latency_ms``,
  ``train_time_s``, ``weights_artifact``;
- why it ended as it did: ``reason``, ``traceback``, ``infeasible`` (the constraint it broke), ``violation``,
  ``duplicate_of`` (the trained twin whose result it copies), ``killed`` (its worker died: not counted in the budget);
- who ran it: ``host``, ``pid``, ``pid_start`` (the process's start time, so a reused pid is not taken for it),
  ``heartbeat`` (beats while it trains or waits), ``node`` (Ray node id), ``ray_trial`` (Ray Tune trial id; on the
  Ray backend ``host``/``pid`` are the driver's).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.study.trial_writes import set_user_attrs

RUNG_PREFIX = "rung_"


class AttributeSink(Protocol):
    """Anything a trial's attributes can be written to: a live ``optuna.Trial`` or a trial opened by number."""

    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: its number, state and every attribute above (None where not written)."""

    number: int
    state: TrialState
    genome: str | None = None
    genome_key: str | None = None
    summary: str = ""
    family: str = ""
    params: int | None = None
    flops: int | None = None
    zoo: str | None = None
    lr: float | None = None
    seed: int | None = None
    twin_key: str | None = None
    curve: list = field(default_factory=list)
    epoch_s: float | None = None
    epoch_on: str | None = None
    epochs: int | None = None
    rungs: dict = field(default_factory=dict)  # rung epoch -> val accuracy there (0: the screen)
    screen: dict | None = None  # pruner.screen's fit: train_samples, epochs, val_accuracy, train_time_s
    val_accuracy: float | None = None
    val_samples: int | None = None
    test_accuracy: float | None = None
    latency_ms: float | None = None
    train_time_s: float | None = None
    weights_artifact: str | None = None
    reason: str | None = None
    traceback: str | None = None
    infeasible: str | None = None
    violation: float | None = None
    duplicate_of: int | None = None
    killed: bool = False
    simulated: bool = False  # scored by evaluators.simulated, never trained
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    heartbeat: float | None = None
    node: str | None = None
    ray_trial: str | None = None

    @classmethod
    def of(cls, trial: FrozenTrial | optuna.Trial) -> "TrialRecord":
        """The record of a stored trial, or of a live one (RUNNING) as written so far."""
        return cls.from_attrs(trial.number, getattr(trial, "state", TrialState.RUNNING), trial.user_attrs)

    @classmethod
    def from_attrs(cls, number: int, state: TrialState, attrs: dict[str, Any]) -> "TrialRecord":
        """The record of trial ``number`` from its user attributes (all of them, or the ones a reader needs)."""
        rungs = {int(k[len(RUNG_PREFIX):]): v for k, v in attrs.items() if k.startswith(RUNG_PREFIX)}
        known = {k: attrs[k] for k in WRITABLE if k in attrs and attrs[k] is not None}
        return cls(number=number, state=state, rungs=rungs, **known)

    @property
    def full_budget(self) -> bool:
        """COMPLETE, feasible and scored at full budget: a result to compare, rank and export (a duplicate
        carries its twin's scores and weights)."""
        return self.state == TrialState.COMPLETE and self.infeasible is None and self.val_accuracy is not None

    @property
    def trained(self) -> bool:
        """A full-budget result this trial trained itself (not a copy of a twin): what fronts and dedup use."""
        return self.full_budget and self.duplicate_of is None

    @property
    def has_point(self) -> bool:
        """Something to draw: a full-budget result, or a pruned trial with at least one epoch."""
        if self.params is None or self.infeasible is not None:
            return False
        return self.full_budget or self.state == TrialState.PRUNED and bool(self.curve)

    @property
    def shown_state(self) -> str:
        """The state as the user reads it: 'infeasible' for an untrained infeasible genome, else Optuna's."""
        return "infeasible" if self.infeasible is not None else self.state.name.lower()

    @property
    def epochs_done(self) -> int:
        return int(self.epochs if self.epochs is not None else len(self.curve))

    @property
    def stopped_at_screen(self) -> bool:
        """Ended at its ``pruner.screen`` (dropped by the rung rule, or its screen fit stopped): no full-fit epoch."""
        return self.screen is not None and self.state != TrialState.RUNNING and not self.epochs_done

    @property
    def last_val_accuracy(self) -> float | None:
        """The full-budget accuracy, else the last epoch's (a pruned trial's)."""
        if self.full_budget:
            return self.val_accuracy
        return self.curve[-1]["val_accuracy"] if self.curve else None

    def metrics(self) -> dict[str, float]:
        """The objective metrics known so far (``val_accuracy``, ``params``, ``flops``, ``latency_ms``)."""
        values = {"val_accuracy": self.val_accuracy, "params": self.params, "flops": self.flops,
                  "latency_ms": self.latency_ms}
        return {k: float(v) for k, v in values.items() if v is not None}


WRITABLE = tuple(f.name for f in fields(TrialRecord) if f.name not in ("number", "state", "rungs"))


def write(trial: AttributeSink, rung: tuple[int, float] | None = None, **values: Any) -> None:
    """Writes record attributes in one group, with ``rung`` (epoch, val accuracy) the accuracy a trial reached at a
    rung epoch (``rung_<epoch>``, what the rung rule ranks); a name that is not one of :class:`TrialRecord`'s is a
    programming error."""
    unknown = set(values) - set(WRITABLE)
    if unknown:
        raise KeyError(f"not a trial record attribute: {', '.join(sorted(unknown))}; known: {', '.join(WRITABLE)}")
    set_user_attrs(trial, {**values, **({f"{RUNG_PREFIX}{rung[0]}": rung[1]} if rung is not None else {})})


def write_rung(trial: AttributeSink, epoch: int, val_accuracy: float) -> None:
    """Records the val accuracy a trial reached at rung epoch ``epoch`` alone (trials write it with their epoch)."""
    write(trial, rung=(epoch, val_accuracy))


def records(trials: list[FrozenTrial]) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in trials]


# -- the study's own attributes: ``config`` (the StudyConfig as JSON), ``metrics`` (objective metric names, in
# order), ``baseline_study`` (the name of its dense baseline's study in the same storage) -------------------------
STUDY_ATTRS = ("config", "metrics", "baseline_study", "recheck", "final")  # `nas findings --recheck`, `--final`


def write_study(study: "optuna.Study", **values: Any) -> None:
    """Writes study attributes; a name not in ``STUDY_ATTRS`` is a programming error."""
    unknown = set(values) - set(STUDY_ATTRS)
    if unknown:
        raise KeyError(f"not a study attribute: {', '.join(sorted(unknown))}; known: {', '.join(STUDY_ATTRS)}")
    for key, value in values.items():
        study.set_user_attr(key, value)


def read_study(study: "optuna.Study", name: str, default: Any = None) -> Any:
    """One study attribute (see ``STUDY_ATTRS``), ``default`` when the study has none."""
    if name not in STUDY_ATTRS:
        raise KeyError(f"not a study attribute: {name}; known: {', '.join(STUDY_ATTRS)}")
    return study.user_attrs.get(name, default)
