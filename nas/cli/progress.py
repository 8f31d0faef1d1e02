"""Progress of a running study on the console: the reporter the CLI hands down to ``nas.study.run``."""
from __future__ import annotations

import optuna
from rich.console import Console

from nas.study.ledger import ledger
from nas.study.summary import hypervolume, params_reference


class ProgressBar:
    """Polls the storage and shows done/pruned/failed, the Pareto set's size and its hypervolume.

    On a terminal a live bar; elsewhere (CI, a log file) one line each time the numbers change.
    """

    def __init__(self, study: optuna.Study, budget: int, label: str, console: Console):
        self.study, self.budget, self.label, self.console = study, budget, label, console
        self.last = ""
        self.params_reference = params_reference(study)  # from the study's config: fixed while it runs
        self.progress = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console)
            self.task = self.progress.add_task(label, total=budget, stats="")
            self.progress.start()

    def poll(self) -> None:
        book = ledger(self.study)  # one read of what changed serves the counts and the front
        counts = book.state_counts()
        done = counts["complete"] + counts["pruned"] + counts["failed"] + counts["infeasible"]
        front = book.shown_front()
        hv = hypervolume(book.size_front, self.params_reference)  # accuracy vs params, whatever the objectives
        stats = (f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed, "
                 f"{counts['infeasible']} infeasible | Pareto {len(front)} | HV {hv:.3f}")
        if self.progress is not None:
            self.progress.update(self.task, completed=min(done, self.budget), stats=stats)
        elif stats != self.last:
            self.console.print(f"{self.label}: {min(done, self.budget)}/{self.budget} trials: {stats}")
        self.last = stats

    def close(self) -> None:
        self.poll()
        if self.progress is not None:
            self.progress.stop()


class ConsoleReporter:
    """Messages and progress bars on a rich console (``nas.study.run.Reporter``)."""

    def __init__(self, console: Console):
        self.console = console

    def message(self, text: str) -> None:
        self.console.print(text)

    def track(self, study: optuna.Study, budget: int, label: str) -> ProgressBar:
        return ProgressBar(study, budget, label, self.console)
