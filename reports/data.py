"""Plain data for the report, read from the storage only: points, fronts, the headline, hypervolume, Pareto details.

A *finished* trial is one with a result to draw: COMPLETE and not infeasible (trained, or a copy of a trained
twin) or PRUNED with a learning curve (drawn at the accuracy it reached). Failed, infeasible and running
trials are counted, never drawn. ``reports/figures.py`` turns this data into figures; tests check this data.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import networkx as nx
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.study.final import FinalRow, stored_final
from nas.study.records import TrialRecord, read_study
from nas.study.storage import mask_url
from nas.search.samplers import generations
from nas.study.summary import (Headline, headline, hypervolume, params_reference, pareto_trials, search_note,
                               simulated, state_counts, trained)
from reports.choices import Choices, choices_data
from reports.findings import Findings, findings_data
from reports.layout import RecoveredLayout, recovered_layouts
from search_space import Genome, GenomeError


@dataclass(frozen=True)
class TrialPoint:
    """One finished trial as a point: accuracy reached (final for complete, last epoch for pruned) and size."""

    number: int
    state: str  # complete | pruned
    val_accuracy: float
    test_accuracy: float | None
    params: int
    flops: int | None
    epochs: int
    summary: str
    family: str
    zoo: str | None
    duplicate_of: int | None
    val_samples: int | None = None  # the validation split's size (for the headline's standard errors)


@dataclass(frozen=True)
class DrawnNode:
    """A genome node placed for drawing: ``layer`` is its topological generation, ``x``/``y`` its position."""

    name: str
    op: str
    shape: str
    params: int
    layer: int
    x: float
    y: float


@dataclass(frozen=True)
class GenomeDrawing:
    nodes: list[DrawnNode]
    edges: list[tuple[str, str]]
    note: str | None = None  # why there is nothing to draw


@dataclass(frozen=True)
class ParetoDetail:
    """What the page shows for one Pareto trial: its point, learning curve, graph and export command."""

    point: TrialPoint
    curve_epochs: list[int]
    curve_val_accuracy: list[float]
    drawing: GenomeDrawing
    export_command: str


@dataclass(frozen=True)
class Hypervolume:
    """Hypervolume of the trained trials so far, after each finished trial (by number and by completion time)."""

    numbers: list[int]
    by_number: list[float]
    times: list[dt.datetime]
    by_time: list[float]
    baseline: float | None  # the dense baseline's trained trials, same reference
    params_reference: float


@dataclass(frozen=True)
class ReportData:
    study: str
    storage: str  # masked
    config: dict
    counts: dict[str, int]  # complete (incl. duplicates), pruned, failed, infeasible, running
    points: list[TrialPoint]  # every finished trial of the search
    pareto: list[TrialPoint]  # nas.study.summary.pareto_trials, by increasing params
    baseline_study: str | None
    baseline_front: list[TrialPoint]
    headline: Headline
    hypervolume: Hypervolume
    choices: Choices
    details: list[ParetoDetail] = field(default_factory=list)
    findings: Findings | None = None
    infeasible_zoo: list[str] = field(default_factory=list)  # warm-start models over the constraints
    final: list[FinalRow] = field(default_factory=list)  # `nas findings --final`, when it ran
    layouts: list[RecoveredLayout] = field(default_factory=list)  # the reorder ops' orders, drawn
    layout_note: str | None = None  # why no layout is drawn although a trial reorders its input
    search_note: str | None = None  # which generations NSGA-II bred (nas.study.summary.search_note)
    generated: str = ""

    @property
    def not_drawn(self) -> dict[str, int]:
        """Trials with no point on the Pareto plot, by why (only non-zero counts)."""
        undrawn = self.counts.get("pruned", 0) - sum(p.state == "pruned" for p in self.points)
        counts = {"infeasible": self.counts.get("infeasible", 0), "failed": self.counts.get("failed", 0),
                  "running": self.counts.get("running", 0), "pruned before any epoch": undrawn}
        return {k: v for k, v in counts.items() if v}


def is_finished(trial: FrozenTrial) -> bool:
    """A trial with a result to draw (see the module docstring)."""
    return TrialRecord.of(trial).has_point


def trial_point(trial: FrozenTrial) -> TrialPoint:
    r = TrialRecord.of(trial)
    complete = r.state == TrialState.COMPLETE
    return TrialPoint(r.number, "complete" if complete else "pruned", float(r.last_val_accuracy),
                      r.test_accuracy if complete else None, int(r.params), r.flops, r.epochs_done, r.summary,
                      r.family or "unknown", r.zoo, r.duplicate_of, r.val_samples)


def hypervolume_data(trials: list[FrozenTrial], baseline: list[FrozenTrial] | None, reference: float) -> Hypervolume:
    """Running hypervolume of the trained trials, stepping at every finished trial."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    numbers, by_number, so_far = [], [], []
    for t in sorted(done, key=lambda t: t.number):
        so_far += [t] if trained(t) else []
        numbers.append(t.number)
        by_number.append(hypervolume(so_far, reference))
    times, by_time, so_far = [], [], []
    for t in sorted((t for t in done if t.datetime_complete), key=lambda t: t.datetime_complete):
        so_far += [t] if trained(t) else []
        times.append(t.datetime_complete)
        by_time.append(hypervolume(so_far, reference))
    dense = hypervolume([t for t in baseline if trained(t)], reference) if baseline is not None else None
    return Hypervolume(numbers, by_number, times, by_time, dense, reference)


def _barycentric_order(graph: nx.DiGraph) -> list[list[str]]:
    """Topological generations, each ordered by the mean position of its inputs (fewer crossing edges)."""
    order: dict[str, float] = {}
    layers = []
    for generation in nx.topological_generations(graph):
        def key(node: str) -> tuple:
            parents = [order[p] for p in graph.predecessors(node)]
            return (sum(parents) / len(parents) if parents else 0.0, node)
        layer = sorted(generation, key=key)
        order.update({node: i - (len(layer) - 1) / 2 for i, node in enumerate(layer)})
        layers.append(layer)
    return layers


def genome_drawing(genome_json: str | None) -> GenomeDrawing:
    """Nodes placed by ``nx.multipartite_layout`` over topological generations (input on top)."""
    if not genome_json:
        return GenomeDrawing([], [], "no genome recorded for this trial")
    try:
        info = Genome.from_json(genome_json).analyze()
    except GenomeError as exc:
        return GenomeDrawing([], [], f"genome cannot be drawn: {exc}")
    graph = nx.DiGraph()
    graph.add_nodes_from(info)
    graph.add_edges_from((source, name) for name, node in info.items() for source in node.inputs)
    layers = dict(enumerate(_barycentric_order(graph)))
    pos = nx.multipartite_layout(graph, subset_key=layers, align="horizontal")  # x: within layer, y: layer
    ys = [p[1] for p in pos.values()]
    unit = (max(ys) - min(ys)) / (len(layers) - 1) if len(layers) > 1 else 1.0  # uniform scale: a layer step = 1
    nodes = [DrawnNode(name, info[name].op, "×".join(map(str, info[name].shape)), info[name].params, depth,
                       float(pos[name][0] / unit), -float(depth)) for depth, layer in layers.items() for name in layer]
    return GenomeDrawing(nodes, list(graph.edges))


def export_command(target: str, number: int, study: str, storage: str | None) -> str:
    """The ``nas export`` line that writes this trial's genome and weights (storage masked)."""
    extra = f" --storage {mask_url(storage)}" if storage else ""
    return f"nas export {target} --trial {number} --out exports/{study}-trial-{number}{extra}"


def pareto_detail(trial: FrozenTrial, target: str, study: str, storage: str | None) -> ParetoDetail:
    record = TrialRecord.of(trial)
    return ParetoDetail(trial_point(trial), [int(c["epoch"]) for c in record.curve],
                        [float(c["val_accuracy"]) for c in record.curve], genome_drawing(record.genome),
                        export_command(target, trial.number, study, storage))


def report_data(study: optuna.Study, baseline: optuna.Study | None, target: str | None = None,
                storage: str | None = None, url: str = "") -> ReportData:
    """Everything the page shows; ``target``/``storage`` are how the user named the study (for export lines)."""
    front = pareto_trials(study)  # before the snapshot: every trial in it is final, so also in the snapshot
    trials = study.get_trials(deepcopy=False)
    baseline_trials = baseline.get_trials(deepcopy=False) if baseline is not None else None
    baseline_front = [trial_point(t) for t in pareto_trials(baseline)] if baseline is not None else []
    points = [trial_point(t) for t in trials if is_finished(t)]
    pareto = [trial_point(t) for t in front]
    target = target or study.study_name
    config = read_study(study, "config", {})
    layouts, layout_note = recovered_layouts(config["dataset"], trials) if config.get("dataset") else ([], None)
    return ReportData(
        study=study.study_name, storage=mask_url(url), config=config,
        counts=state_counts(trials), points=points, pareto=pareto,
        baseline_study=read_study(study, "baseline_study"), baseline_front=baseline_front,
        headline=headline(pareto, baseline_front, simulated(study)),
        hypervolume=hypervolume_data(trials, baseline_trials, params_reference(study)),
        choices=choices_data(study, [t for t in trials if trained(t)]),
        details=[pareto_detail(t, target, study.study_name, storage) for t in front],
        findings=findings_data(trials, baseline_trials or [], params_reference(study)),
        infeasible_zoo=[r.zoo for r in map(TrialRecord.of, trials) if r.infeasible is not None and r.zoo],
        final=stored_final(study), layouts=layouts, layout_note=layout_note,
        search_note=search_note(generations(trials)),
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
