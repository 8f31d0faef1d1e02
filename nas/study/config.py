"""Study configs (``studies/*.yaml``): validated with pydantic, unknown keys are errors."""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from nas.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from evaluators.training import TrainConfig

SEED_LIMIT = 2**31  # numpy and torch take seeds below 2**32; worker w samples with seed + 1000 * w


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(Strict):
    metric: Literal["val_accuracy", "params", "flops", "latency_ms"]
    direction: Literal["maximize", "minimize"]


class Constraints(Strict):
    max_params: int | None = Field(None, gt=0)
    max_flops: int | None = Field(None, gt=0)

    def excess(self, params: int, flops: int) -> tuple[float, str | None]:
        """How far a genome of ``params`` and ``flops`` exceeds the limits (0 when feasible) and why."""
        for name, value, limit in (("params", params, self.max_params), ("flops", flops, self.max_flops)):
            if limit is not None and value > limit:
                return value / limit - 1.0, f"{name} {value:,} exceed max_{name} {limit:,}"
        return 0.0, None


class Sampler(Strict):
    # tpe: multi-objective TPE, the default since it beat NSGA-II on the quickstart at equal wall clock
    # (benchmarks/RESULTS.md "Samplers"); a time-bound study completes too few trials for NSGA-II's generations
    name: Literal["tpe", "nsga2", "random", "qmc", "gp"] = "tpe"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    population_size: int | None = Field(None, ge=2)  # nsga2 only; default: a quarter of the trial budget, 8-50
    # tpe only: model the parameters jointly, one group of co-occurring parameters at a time (Optuna's
    # multivariate=True, group=True) instead of each on its own
    multivariate: bool = False
    # the first sampled trials: "spread" picks them from many random draws to cover the parameter-count range on a
    # log scale, the cheapest genome of each part (nas/search/start.py); "random" leaves them to the sampler.
    # Default: spread for tpe and nsga2, random for the others (random search stays random)
    start: Literal["spread", "random"] | None = None

    @property
    def spreads_start(self) -> bool:
        """Whether the first sampled trials are the spread start (``start``, or its default for this sampler)."""
        return self.start == "spread" or (self.start is None and self.name in ("tpe", "nsga2"))

    @model_validator(mode="after")
    def _tpe_only(self) -> "Sampler":
        if self.multivariate and self.name != "tpe":
            raise ValueError(f"multivariate is a TPE setting; sampler {self.name!r} does not take it")
        return self


SCREEN_FIELD = "pruner.screen.train_samples"  # how errors about the screen's data name it


class Screen(Strict):
    """A cheap first rung on less data: each trial first trains ``epochs`` epochs (its own schedule) on a fixed,
    stratified ``train_samples`` of the training split; only the top ``1/reduction_factor`` by Pareto rank go on to
    the full fit, which starts anew, so a full-budget result is the same whether or not a study screens."""

    train_samples: int = Field(gt=0)
    epochs: int = Field(gt=0)
    reduction_factor: int | None = Field(None, ge=2)  # default: the pruner's


class Pruner(Strict):
    name: Literal["asha", "none"] = "asha"
    min_epochs: int = Field(2, gt=0)
    max_epochs: int = Field(18, gt=0)
    reduction_factor: int = Field(3, ge=2)
    floor: Literal["none", "median"] = "none"  # 'median': below the rung's median accuracy never goes on
    # ASHA stops a trial whose first epoch took more than this many times the median first epoch of the study's
    # other trials (once 4 have one, and by at least 0.5 s); None: never
    # (benchmarks/RESULTS.md "Slow trials (permuted-fashion-small, replayed)")
    max_slowdown: float | None = Field(5.0, gt=1)
    screen: Screen | None = None

    @model_validator(mode="after")
    def _order(self) -> "Pruner":
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})")
        if self.screen is not None and self.name != "asha":
            raise ValueError("pruner.screen needs pruner 'asha' (the screen is its first rung); 'none' trains every "
                             "trial in full")
        return self

    @property
    def screen_factor(self) -> int:
        """The screen's reduction factor (the pruner's unless the screen sets its own)."""
        return (self.screen.reduction_factor if self.screen is not None else None) or self.reduction_factor

    def rungs(self) -> list[int]:
        """Epochs at which the rung rule runs: min * rf^k below max (ASHA's geometric schedule)."""
        if self.name == "none":
            return []
        rungs, epoch = [], self.min_epochs
        while epoch < self.max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return rungs


class FloatRange(Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> "FloatRange":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        return self


Searchable = Union[float, FloatRange]


class Training(Strict):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Searchable = 1e-2
    weight_decay: Searchable = 0.0
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    batch_size: int = Field(128, gt=0)
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    init: Literal["default", "lsuv"] = "default"
    trial_timeout_s: float | None = Field(None, gt=0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)

    @field_validator("lr", "weight_decay")
    @classmethod
    def _in_range(cls, value: Searchable, info: ValidationInfo) -> Searchable:
        """Every value a trial may get is finite, lr > 0 and weight_decay >= 0 (else each trial would fail)."""
        low, high = (value.low, value.high) if isinstance(value, FloatRange) else (value, value)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("must be a finite number")
        if info.field_name == "lr" and low <= 0:
            raise ValueError("must be > 0")
        if low < 0:
            raise ValueError("must be >= 0")
        return value

    def train_config(self, trial: "optuna.trial.BaseTrial", epochs: int, threads: int | None = None,
                     device: str | None = None) -> "TrainConfig":
        """How trial ``trial`` trains: the searchable values drawn on it (or read back from a FixedTrial), the
        seed offset by its number, every other field as configured."""
        from evaluators.training import TrainConfig

        shared = {f.name for f in dataclasses.fields(TrainConfig)} & set(type(self).model_fields)
        values = {name: getattr(self, name) for name in shared}
        values.update(lr=suggest_value(trial, "lr", self.lr),
                      weight_decay=suggest_value(trial, "weight_decay", self.weight_decay),
                      seed=self.seed + trial.number, device=device or self.device)
        return TrainConfig(**values, epochs=epochs, threads=threads)


def suggest_value(trial: "optuna.trial.BaseTrial", name: str, value: float | FloatRange) -> float:
    """A fixed training value, or one sampled from its ``{low, high, log}`` range."""
    if isinstance(value, FloatRange):
        return trial.suggest_float(name, value.low, value.high, log=value.log)
    return float(value)


class Budget(Strict):
    trials: int = Field(60, gt=0)
    minutes: float | None = Field(None, gt=0)


class Baseline(Strict):
    trials: int = Field(24, ge=0)  # benchmarks/RESULTS.md "Dense baseline plateau": the best is reached by 24
    max_params: int | None = Field(None, gt=0)  # the MLPs' own size limit (seed 000: 2M); unset = the study's
    warm_start: list[str] = Field(default_factory=lambda: ["mnist1d-mlp"])  # zoo MLPs tried first, at the data's shape


class Execution(Strict):
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(1, gt=0)
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    max_failures: int = Field(0, ge=-1)  # Ray FailureConfig; -1 retries forever
    heartbeat_s: float = Field(30.0, gt=0)  # a running (or waiting) trial writes its heartbeat this often
    stale_after_s: float | None = Field(None, gt=0)  # another host's trial without a beat this long is dead
    # synthetic learning curves instead of training (evaluators/simulated.py): measures the machinery
    simulate: bool = False

    @model_validator(mode="after")
    def _stale_after_beats(self) -> "Execution":
        if self.stale_after_s is not None and self.stale_after_s < 3 * self.heartbeat_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s:g}) must be at least 3 heartbeats "
                             f"(3 x heartbeat_s = {3 * self.heartbeat_s:g}): a live trial would be swept")
        return self

    @property
    def stale_limit_s(self) -> float:
        """How long another host's trial may go without a heartbeat before a sweep fails it: 10 beats by default."""
        return self.stale_after_s if self.stale_after_s is not None else 10 * self.heartbeat_s


class StudyConfig(Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    dataset: dict[str, Any]
    search_space: dict[str, Any] = Field(default_factory=lambda: {"preset": "perm-cnn-1d"})
    objectives: list[Objective] = Field(default_factory=lambda: [
        Objective(metric="val_accuracy", direction="maximize"), Objective(metric="params", direction="minimize")])
    constraints: Constraints = Field(default_factory=Constraints)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    training: Training = Field(default_factory=Training)
    budget: Budget = Field(default_factory=Budget)
    baseline: Baseline = Field(default_factory=Baseline)
    warm_start: list[str] = Field(default_factory=list)
    # parameter sets of the search space tried after the zoo warm starts, in the sampler's own parameter names
    # (Optuna's enqueue_trial): a design you know, which the sampler then models like its own draws
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    execution: Execution = Field(default_factory=Execution)
    storage: str | None = None

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[Objective]) -> list[Objective]:
        if not value or value[0].metric != "val_accuracy" or value[0].direction != "maximize":
            raise ValueError("the first objective must be {metric: val_accuracy, direction: maximize}")
        if len({o.metric for o in value}) != len(value):
            raise ValueError("each metric may appear once")
        return value

    @model_validator(mode="after")
    def _sampler_learns_from_warm_starts(self) -> "StudyConfig":
        if self.warm_start and self.sampler.name in ("gp", "qmc"):
            raise ValueError(f"sampler.name: {self.sampler.name} cannot be used with warm_start: it models the "
                             "parameters that every trial shares, and zoo genomes have none of the preset's, so it "
                             "would draw at random; use nsga2 or tpe, or warm_start: []")
        return self

    @property
    def max_epochs(self) -> int:
        return self.pruner.max_epochs

    def storage_url(self) -> str:
        """The study's storage: the config's, else SQLite under ``runs/<name>/``."""
        return self.storage or f"sqlite:///runs/{self.name}/study.db"

    def run_dir(self) -> Path:
        return Path("runs") / self.name


UNION_BRANCHES = ("float", "FloatRange")


def _location(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]
                    if str(part) not in UNION_BRANCHES and not str(part).startswith("function-"))


def _most_telling(errors: list[dict]) -> dict:
    """For a ``float | {low, high}`` field given a mapping, the mapping's error says more than 'not a float'."""
    for error in errors:
        if "float" in error["loc"] and isinstance(error.get("input"), dict):
            continue
        return error
    return errors[0]


def parse_config(data: Any, where: str = "study") -> StudyConfig:
    """Validates a config dict; the first problem becomes a one-line ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of study keys, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        first = _most_telling(exc.errors())
        field = _location(first) or "(top level)"
        message = first["msg"].replace("Value error, ", "")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        got = f" (got {first['input']!r})" if first["type"] not in ("missing", "extra_forbidden") \
            and not isinstance(first.get("input"), dict) else ""
        raise ConfigError(f"{where}: {field}: {message}{got}") from None


def load_config(path: str | os.PathLike) -> StudyConfig:
    """Reads a study YAML with ``yaml.safe_load``; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a study YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: YAML syntax error{at}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a study needs at least 'name' and 'dataset'")
    return parse_config(data, str(path))
