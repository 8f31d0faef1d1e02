"""Study configs: the shipped studies parse, and bad ones give one line naming the field or file."""
from __future__ import annotations

from pathlib import Path

import pytest

from nas.study.config import load_config, parse_config
from nas.errors import ConfigError

STUDIES = sorted(Path(__file__).resolve().parents[1].joinpath("studies").glob("*.yaml"))
MINIMAL = {"name": "t", "dataset": {"name": "synthetic"}}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_studies_are_valid(path):
    config = load_config(path)  # raises on any invalid field
    assert config.name == path.stem  # its runs/<name>/ folder and study name are the file's: what users look for


def test_quickstart_matches_the_documented_default():
    config = load_config(Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml")
    assert config.dataset["permute"] is True and config.sampler.name == "tpe"
    assert config.pruner.rungs() == [6] and config.storage_url() == "sqlite:///runs/quickstart/study.db"


@pytest.mark.parametrize("patch,field", [
    ({"bogus": 1}, "bogus"),
    ({"sampler": {"name": "cmaes"}}, "sampler.name"),
    ({"pruner": {"min_epochs": 9, "max_epochs": 3}}, "pruner"),
    ({"pruner": {"max_epochs": 0}}, "pruner.max_epochs"),
    ({"training": {"lr": {"low": 1.0, "high": 0.1}}}, "training.lr"),
    ({"training": {"batch_size": "big"}}, "training.batch_size"),
    ({"budget": {"trials": -1}}, "budget.trials"),
    ({"objectives": [{"metric": "params", "direction": "minimize"}]}, "objectives"),
    ({"execution": {"backend": "slurm"}}, "execution.backend"),
    ({"execution": {"heartbeat_s": 10, "stale_after_s": 20}}, "execution"),
    ({"name": "has space"}, "name"),
])
def test_bad_config_names_the_field(patch, field):
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, **patch}, "s.yaml")
    message = str(err.value)
    assert message.startswith(f"s.yaml: {field}:") and "\n" not in message


def test_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: YAML syntax error at line"):
        load_config(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty.yaml: the file is empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_the_dense_baseline_may_have_a_size_limit_of_its_own():
    from nas.study.plan import baseline_config

    config = parse_config({**MINIMAL, "constraints": {"max_params": 5000},
                           "baseline": {"max_params": 2_000_000, "warm_start": ["dense-baseline"]}})
    baseline = baseline_config(config)
    assert baseline.constraints.max_params == 2_000_000 and config.constraints.max_params == 5000
    assert baseline.warm_start == ["dense-baseline"] and "-p2000000-" in baseline.name
    shared = baseline_config(parse_config({**MINIMAL, "constraints": {"max_params": 5000}}))
    assert shared.constraints.max_params == 5000 and shared.warm_start == ["mnist1d-mlp"]
