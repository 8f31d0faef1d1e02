"""Malformed study and genome files: each, run as a real ``nas`` process, exits 2 with one line naming the problem.

Every case is its own process (the console script as a user runs it), all started together and checked one
by one: exit code 2, exactly one line on stderr that starts ``nas: error:`` and names the field or file, no
traceback anywhere, and no password from a storage URL in any output.
"""
from __future__ import annotations

import json
import pickle
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_STUDY, nas_command, nas_env

SECRETS = ("secret", "hunter2")  # passwords in the storage URLs below; never printed


@dataclass(frozen=True)
class Case:
    """One malformed input: how to write it, the ``nas`` arguments ({file} is its path), what the error names."""

    name: str
    write: Callable[[Path], None]
    args: tuple[str, ...]
    needles: tuple[str, ...]


def study(**changes) -> Callable[[Path], None]:
    """The tiny study with top-level keys replaced (a value of None drops the key)."""
    def write(path: Path) -> None:
        data = {k: v for k, v in {**TINY_STUDY, **changes}.items() if v is not None}
        path.write_text(yaml.safe_dump(data))
    return write


def raw(content: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return write


GENOME = {"nodes": [{"id": "in", "op": "input", "shape": [4, 8]},
                    {"id": "conv", "op": "conv", "out_channels": 8, "kernel": 3},
                    {"id": "gap", "op": "global_pool"},
                    {"id": "logits", "op": "dense", "out_features": 3},
                    {"id": "out", "op": "output"}],
          "edges": [{"source": "in", "target": "conv"}, {"source": "conv", "target": "gap"},
                    {"source": "gap", "target": "logits"}, {"source": "logits", "target": "out"}]}


def genome(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """The valid GENOME above, changed in place by ``change``, as JSON."""
    def write(path: Path) -> None:
        data = json.loads(json.dumps(GENOME))
        change(data)
        path.write_text(json.dumps(data))
    return write


def node(data: dict, name: str) -> dict:
    return next(n for n in data["nodes"] if n["id"] == name)


def cifar_with_truncated_batch(path: Path) -> None:
    """A CIFAR-10 folder whose third training batch was cut off half-way (an interrupted copy)."""
    folder = path.parent / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    batch = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [i % 10 for i in range(20)]}
    for stem in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / stem).write_bytes(pickle.dumps(batch))
    whole = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(whole[:len(whole) // 2])
    study(dataset={"name": "cifar10", "path": "cifar"})(path)


RUN, SHOW = ("run", "{file}"), ("genome", "show", "{file}")
CASES = [
    # study files: nas run STUDY.yaml
    Case("unknown key", study(bogus=1), RUN, ("bogus", "unknown key")),
    Case("wrong type", study(budget={"trials": "many"}), RUN, ("budget.trials",)),
    Case("zero epochs", study(pruner={"name": "none", "min_epochs": 1, "max_epochs": 0}), RUN,
         ("pruner.max_epochs",)),
    Case("min epochs above max", study(pruner={"min_epochs": 5, "max_epochs": 2}), RUN,
         ("pruner", "min_epochs (5)")),
    Case("negative lr", study(training={"lr": -0.1}), RUN, ("training.lr", "> 0")),
    Case("zero trials on the command line", study(), (*RUN, "--trials", "0"), ("budget.trials",)),
    Case("unknown preset", study(search_space={"preset": "resnet"}), RUN, ("search_space.preset", "resnet")),
    Case("unknown sampler", study(sampler={"name": "cmaes"}), RUN, ("sampler.name",)),
    Case("negative sampler seed", study(sampler={"name": "random", "seed": -1}), RUN, ("sampler.seed",)),
    Case("unknown warm start genome", study(warm_start=["nosuch-net"]), RUN, ("warm_start", "nosuch-net")),
    Case("a CNN as a dense baseline warm start", study(baseline={"trials": 2, "warm_start": ["lenet5"]}), RUN,
         ("baseline.warm_start", "lenet5", "not an MLP")),
    Case("size limits no dense baseline fits", study(constraints={"max_params": 40}, baseline={"trials": 2}), RUN,
         ("constraints", "no dense baseline fits", "32 -> 1 -> 4, has 41 params", "baseline.trials: 0")),
    Case("unknown dataset", study(dataset={"name": "imagenet"}), RUN, ("'name'", "imagenet")),
    Case("missing dataset path", study(dataset={"name": "cifar10"}), RUN, ("'path'", "cifar10")),
    Case("cifar folder with a truncated batch", cifar_with_truncated_batch, RUN, ("data_batch_3",)),
    Case("yaml syntax error", raw("name: [unclosed\ndataset: {name: synthetic}\n"), RUN,
         ("study.yaml", "YAML syntax error at line")),
    Case("yaml python tag", raw('name: !!python/object/apply:os.system ["touch pwned"]\n'), RUN, ("study.yaml",)),
    Case("empty file", raw(""), RUN, ("study.yaml", "empty")),
    Case("not utf-8", raw(b"name: \xff\xfe\x00\x01\n"), RUN, ("study.yaml", "UTF-8")),
    Case("unreachable postgres", study(storage="postgresql://u:secret@127.0.0.1:1/db"), RUN,
         ("storage: cannot connect to postgresql://u:***@127.0.0.1:1/db",)),
    Case("unsupported storage", study(storage="mongodb://admin:hunter2@localhost/db"), RUN,
         ("storage", "mongodb://admin:***@")),
    Case("mysql storage", study(storage="mysql://admin:hunter2@localhost/db"), RUN,
         ("storage: MySQL is not supported", "mysql://admin:***@", "SQLite and PostgreSQL")),
    # genome files: nas genome show GENOME.json
    Case("genome with a cycle", genome(lambda g: g["edges"].append({"source": "gap", "target": "conv", "slot": 1})),
         SHOW, ("part of a cycle",)),
    Case("groups that do not divide channels", genome(lambda g: node(g, "conv").update(groups=3)), SHOW,
         ("'conv'", "'groups'=3")),
    Case("genome slot not an integer", genome(lambda g: g["edges"][0].update(slot="first")), SHOW, ("'slot'",)),
    Case("genome duplicate node id", genome(lambda g: g["nodes"].append({"id": "gap", "op": "flatten"})), SHOW,
         ("'gap'", "defined twice")),
    Case("genome nested too deeply", raw("[" * 100_000), SHOW, ("genome.json", "nested too deeply")),
    Case("genome not utf-8", raw(b"\xff\xfe{}"), SHOW, ("genome.json", "UTF-8")),
]


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir()
    file = folder / ("genome.json" if case.args[0] == "genome" else "study.yaml")
    case.write(file)
    args = [str(file) if a == "{file}" else a for a in case.args]
    return subprocess.run(nas_command(*args), cwd=folder, env=nas_env(folder), capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Every case run at once, each in its own folder (most fail before any training starts)."""
    root = tmp_path_factory.mktemp("bad-input")
    folders = {case.name: root / f"case{i}" for i, case in enumerate(CASES)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case.name: pool.submit(run_case, case, folders[case.name]) for case in CASES}
        return {name: (folders[name], future.result()) for name, future in futures.items()}


def test_at_least_twenty_malformed_inputs():
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_malformed_input_exits_2_with_one_line(case, outcomes):
    folder, done = outcomes[case.name]
    everything = done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert done.returncode == 2, everything
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), everything
    for needle in case.needles:
        assert needle in lines[0]
    assert "Traceback" not in everything
    assert not any(secret in everything for secret in SECRETS)
    assert not (folder / "pwned").exists()
