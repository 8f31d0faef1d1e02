"""Which design buys accuracy per parameter, read from the storage: plain data for ``nas findings`` and the report.

For every design choice a genome can make (permutation, reorder, group pattern, Twist, each decomposition, 1x1
reduction order, downsampling, head) the hypervolume of the front built only from the trained trials that make it
against the front of those that do not; the best validation accuracy within fixed parameter budgets per layer
family; and the parameter ratio at matched accuracy against the dense baseline's front. Validation only: test
accuracy is read nowhere here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from optuna.trial import FrozenTrial

from nas.scheduling.pareto import hypervolume_2d, pareto_set
from nas.study.records import TrialRecord
from search_space import Genome, GenomeError

BUDGETS = (1_000, 3_000, 10_000, 30_000, 100_000)


@dataclass(frozen=True)
class Scored:
    """A trained trial as the findings need it: its size, validation accuracy, family and genome's nodes."""

    number: int
    params: int
    val_accuracy: float
    family: str
    nodes: tuple[dict, ...]


def scored(trials: list[FrozenTrial]) -> list[Scored]:
    """The trials trained at full budget by themselves (copies and infeasible ones left out)."""
    out = []
    for record in map(TrialRecord.of, trials):
        if not record.trained or record.genome is None:
            continue
        try:
            nodes = tuple(data for _, data in Genome.from_json(record.genome).graph.nodes(data=True))
        except GenomeError:
            continue
        out.append(Scored(record.number, int(record.params), float(record.val_accuracy), record.family, nodes))
    return out


def _ops(nodes: tuple[dict, ...], *names: str) -> list[dict]:
    return [n for n in nodes if n.get("op") in names]


def _grouped(nodes: tuple[dict, ...], pattern: str) -> bool:
    return any(n.get("groups", 1) > 1 and n.get("pattern", "none") == pattern for n in _ops(nodes, "conv", "twist_conv"))


def _strided(nodes: tuple[dict, ...]) -> bool:
    return any(n.get("stride", 1) > 1 for n in _ops(nodes, "conv", "twist_conv", "factorized_conv",
                                                    "separable_conv", "lowrank_conv"))


# choice -> whether a genome (its nodes) makes it
CHOICES: dict[str, Callable[[tuple[dict, ...]], bool]] = {
    "permutation": lambda n: bool(_ops(n, "permute")),
    "reorder": lambda n: bool(_ops(n, "reorder")),
    **{f"reorder {method}": (lambda n, m=method: any(r.get("method") == m for r in _ops(n, "reorder")))
       for method in ("spectral", "chain", "grid")},
    "group pattern shuffle": lambda n: _grouped(n, "shuffle"),
    "group pattern cycle": lambda n: _grouped(n, "cycle"),
    "twist": lambda n: bool(_ops(n, "twist_conv")),
    "factorized (k x 1 + 1 x k)": lambda n: bool(_ops(n, "factorized_conv")),
    "separable": lambda n: bool(_ops(n, "separable_conv")),
    "low-rank": lambda n: bool(_ops(n, "lowrank_conv")),
    **{f"reduce {order}": (lambda n, o=order: any(r.get("order") == o for r in _ops(n, "reduce")))
       for order in ("conv-bn-act", "bn-act-conv", "conv")},
    "downsample by pooling": lambda n: bool(_ops(n, "pool")),
    "downsample by strided conv": _strided,
    "global-pooling head (else flatten + dense)": lambda n: bool(_ops(n, "global_pool")),
}


def front_hypervolume(points: list[Scored], params_reference: float) -> float:
    """Area dominated in (val accuracy, -log10 params) from (0, -log10 reference), as the report's."""
    return hypervolume_2d([(p.val_accuracy, -math.log10(max(1, p.params))) for p in points],
                          (0.0, -math.log10(params_reference)))


@dataclass(frozen=True)
class ChoiceRow:
    """One design choice: how many trained trials make it, and the hypervolume of each side's front."""

    choice: str
    with_trials: int
    without_trials: int
    hv_with: float
    hv_without: float


def choice_rows(points: list[Scored], params_reference: float) -> list[ChoiceRow]:
    """Every choice some but not all trained trials make (a choice nobody or everybody made says nothing)."""
    rows = []
    for name, makes in CHOICES.items():
        yes = [p for p in points if makes(p.nodes)]
        no = [p for p in points if not makes(p.nodes)]
        if yes and no:
            rows.append(ChoiceRow(name, len(yes), len(no), front_hypervolume(yes, params_reference),
                                  front_hypervolume(no, params_reference)))
    return rows


def best_within_budgets(points: list[Scored], budgets: tuple[int, ...] = BUDGETS) -> dict[str, dict[int, float]]:
    """Per layer family, the best validation accuracy among trials with at most each budget of parameters."""
    table: dict[str, dict[int, float]] = {}
    for family in sorted({p.family for p in points}):
        mine = [p for p in points if p.family == family]
        table[family] = {b: max(p.val_accuracy for p in fits) for b in budgets
                         if (fits := [p for p in mine if p.params <= b])}
    return table


def front(points: list[Scored]) -> list[Scored]:
    """The non-dominated points (more accuracy, fewer parameters), by increasing parameters."""
    keep = set(pareto_set({p.number: (p.val_accuracy, -p.params) for p in points}))
    return sorted((p for p in points if p.number in keep), key=lambda p: (p.params, -p.val_accuracy))


def ratios_at_matched_accuracy(searched: list[Scored], dense: list[Scored]) -> list[tuple[float, int, int, float]]:
    """For each point of the dense front: (its accuracy, its params, the fewest params a searched trial needs to
    reach that accuracy, dense / searched); dense points no searched trial reaches are left out."""
    out = []
    for point in front(dense):
        reaching = [p.params for p in searched if p.val_accuracy >= point.val_accuracy]
        if reaching:
            out.append((point.val_accuracy, point.params, min(reaching), point.params / min(reaching)))
    return out


@dataclass(frozen=True)
class Findings:
    """Everything ``nas findings`` prints and the report's findings section shows."""

    trained_trials: int
    choices: list[ChoiceRow]
    best_within_budgets: dict[str, dict[int, float]]
    ratios: list[tuple[float, int, int, float]]  # (dense val accuracy, dense params, searched params, ratio)


def findings_data(trials: list[FrozenTrial], baseline_trials: list[FrozenTrial],
                  params_reference: float) -> Findings:
    """The findings of a study's trials against its dense baseline's (empty when it has none)."""
    points = scored(trials)
    return Findings(len(points), choice_rows(points, params_reference), best_within_budgets(points),
                    ratios_at_matched_accuracy(points, scored(baseline_trials)))


def ratio_words(ratio: float) -> str:
    """``4.2x fewer`` or, below 1, ``2.0x more`` (parameters the searched genome needs against the dense one)."""
    return f"{ratio:.1f}x fewer" if ratio >= 1 else f"{1 / ratio:.1f}x more"
