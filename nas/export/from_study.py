"""Exporting from a study: which trial (by number, or the most accurate Pareto trial under a size), its weights
from the artifact store (or a retrain at full budget), and the bundle written by :mod:`nas.export.bundle`."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from evaluators.datasets import load_dataset
from evaluators.training import train
from nas.errors import ConfigError
from nas.export.bundle import Bundle, write_bundle
from nas.study.plan import artifact_dir
from nas.study.records import TrialRecord
from nas.study.storage import load_study, stored_config
from nas.study.summary import pareto_trials, state_counts
from search_space import Genome, build_model


def exportable(trial: FrozenTrial) -> bool:
    """COMPLETE, feasible and scored at full budget (a duplicate carries its twin's weights and scores)."""
    return TrialRecord.of(trial).full_budget


def _why_not(trial: FrozenTrial) -> str:
    r = TrialRecord.of(trial)
    if r.infeasible is not None:
        return f"infeasible ({r.infeasible})"
    if r.state == TrialState.PRUNED:
        if r.stopped_at_screen:
            return "pruned at its screen"
        return f"pruned after {r.epochs if r.epochs is not None else '?'} epochs"
    return r.state.name.lower() + (f" ({r.reason})" if r.reason else "")


def select_trial(study: optuna.Study, number: int | None = None, max_params: float | None = None) -> FrozenTrial:
    """Trial ``number``, else the most accurate Pareto trial (with at most ``max_params`` parameters)."""
    trials = study.get_trials(deepcopy=False)
    ready = [t.number for t in trials if exportable(t)]
    if not ready:
        counts = ", ".join(f"{v} {k}" for k, v in state_counts(trials).items() if v) or "no trials"
        raise ConfigError(f"study {study.study_name!r} has no trial trained at full budget yet ({counts}); "
                          "nothing to export")
    if number is not None:
        found = [t for t in trials if t.number == number]
        if not found:
            raise ConfigError(f"--trial {number}: study {study.study_name!r} has no trial {number}; "
                              f"its trials are numbered 0 to {len(trials) - 1}")
        if not exportable(found[0]):
            raise ConfigError(f"--trial {number}: trial {number} is {_why_not(found[0])}; exportable trials: "
                              f"{', '.join(map(str, ready))}")
        return found[0]
    front = pareto_trials(study)
    if max_params is not None:
        fitting = [t for t in front if TrialRecord.of(t).params <= max_params]
        if not fitting:
            smallest = min(front, key=lambda t: TrialRecord.of(t).params)
            raise ConfigError(f"--max-params {max_params:,.0f}: no Pareto trial is that small; the smallest is "
                              f"trial {smallest.number} with {TrialRecord.of(smallest).params:,} parameters")
        front = fitting
    return max(front, key=lambda t: (TrialRecord.of(t).val_accuracy, -TrialRecord.of(t).params, -t.number))


def trial_weights(store_dir: Path, trial: FrozenTrial) -> tuple[dict | None, str]:
    """The trial's saved state dict, or None and why it is missing."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.artifacts.exceptions import ArtifactNotFound

    artifact = TrialRecord.of(trial).weights_artifact
    if artifact is None:
        return None, "it recorded no weights artifact"
    try:
        with FileSystemArtifactStore(store_dir).open_reader(artifact) as reader:
            payload = reader.read()
    except ArtifactNotFound:
        return None, f"its weights artifact {artifact} is not in {store_dir}"
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True), ""


def export_trial(name: str, url: str, out: str | Path, *, number: int | None = None,
                 max_params: float | None = None, fold_bn: bool = False, onnx: bool = False, retrain: bool = False,
                 say: Callable[[str], None] = print) -> Bundle:
    """Chooses a trial of study ``name`` in the storage at ``url``, gets its weights and writes the bundle."""
    study = load_study(name, url)
    config = stored_config(study, url)
    trial = select_trial(study, number, max_params)
    genome = Genome.from_json(TrialRecord.of(trial).genome, f"trial {trial.number} genome").validate()
    data = load_dataset(config.dataset)
    record = TrialRecord.of(trial)
    trained_by = trial.number if record.duplicate_of is None else record.duplicate_of  # a copy carries its twin's fit
    epochs = int(trial.params.get("epochs", config.max_epochs))  # the dense baseline draws its epochs
    training = config.training.train_config(optuna.trial.FixedTrial(trial.params, trained_by), epochs)
    metrics = {"val_accuracy": record.val_accuracy, "test_accuracy": record.test_accuracy,
               "params": genome.params, "flops": genome.flops}
    state, missing = trial_weights(artifact_dir(config, url), trial)
    source = f"artifact {record.weights_artifact}"
    if state is None:
        plan = f"{training.epochs} epochs, lr {training.lr:g}, seed {training.seed}"
        if not retrain:
            raise ConfigError(f"trial {trial.number} of study {name!r} has no saved weights ({missing}); pass "
                              f"--retrain to train it again at full budget ({plan})")
        say(f"trial {trial.number} has no saved weights ({missing}): retraining it at full budget ({plan})")
        result = train(genome, data, training, evaluate_test=True)
        if result.stopped is not None:
            raise ConfigError(f"--retrain: training trial {trial.number} stopped early: {result.reason}")
        state, source = result.model.state_dict(), "retrained by nas export --retrain"
        metrics.update(val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy)
        say(f"retrained: val {100 * result.val_accuracy:.2f}%, test {100 * result.test_accuracy:.2f}% (the trial "
            f"recorded val {100 * record.val_accuracy:.2f}%)")
    elif retrain:
        say(f"trial {trial.number} has saved weights ({source}); --retrain is not needed and was not used")
    fitting = build_model(genome).state_dict()
    wrong = sorted(set(fitting) ^ set(state)) or [k for k in fitting if fitting[k].shape != state[k].shape]
    if wrong:
        raise ConfigError(f"trial {trial.number}: its weights do not fit its genome (tensor {wrong[0]!r} is missing, "
                          "unexpected or of another shape)")
    settings = {k: v for k, v in asdict(training).items() if k not in ("threads", "device", "trial_timeout_s")}
    dataset = {**data.spec.to_dict(), "normalization": data.normalization,
               "permutation": "numpy.random.RandomState(permute_seed).permutation(features), applied to the "
                              "flattened normalized features" if data.spec.permute else None}
    manifest = {"study": name, "trial": trial.number, "summary": genome.summary(), "genome_key": genome.key(),
                "input_shape": list(data.input_shape), "classes": list(data.classes), "dataset": dataset,
                "metrics": metrics, "seed": training.seed, "trained_by_trial": trained_by, "training": settings,
                "weights": source}
    title = (f"Trial {trial.number} of study {name!r}: {genome.summary()} (val {100 * metrics['val_accuracy']:.2f}%, "
             f"{genome.params:,} params)")
    return write_bundle(genome, state, out, fold_bn=fold_bn, onnx=onnx, manifest=manifest, data=data, title=title)
