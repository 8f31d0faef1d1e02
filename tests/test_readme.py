"""README.md's concrete claims that no behaviour test pins: each test reads the README itself (or restates one of
its numbers) and checks it against the code, so a change to either that breaks the claim fails here.

Covered: every ``nas`` command line the README shows parses with the real parser, the flags of its synopses
exist, the defaults it names (dashboard port, --seeds), the shipped studies it lists, the op table's rows and
defaults, SQLite's WAL / 60 s busy timeout / synchronous=NORMAL, the stale-trial limit (10 heartbeats = 300 s),
ASHA's rung epochs, and the dense baseline's search ranges.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nas.cli.main import build_parser
from nas.study.config import FloatRange, Pruner, parse_config
from nas.study.plan import baseline_config
from nas.study.storage import open_storage
from search_space.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MINIMAL = {"name": "t", "dataset": {"name": "synthetic"}}


def section(title: str) -> str:
    """The README's text under ``## title``, up to the next ``## ``."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def shown_command_lines() -> list[list[str]]:
    """Every ``.venv/bin/nas ...`` line of the README's bash blocks (continuations joined), as argv without
    ``nas`` and without the trailing comment."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith(".venv/bin/nas "):
                lines.append(shlex.split(line, comments=True)[1:])
    return lines


def test_every_command_line_the_readme_shows_parses():
    lines = shown_command_lines()
    assert len(lines) >= 15 and {argv[0] for argv in lines} >= {"run", "status", "findings", "baseline", "zoo",
                                                                 "report", "dashboard", "export", "genome"}
    parser = build_parser()
    for argv in lines:
        parser.parse_args(argv)  # an unknown flag, a missing value or a bad choice exits 2 here


def subcommand(name: str):
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions if a.dest == "command").choices[name]


def test_every_flag_of_a_synopsis_exists():
    """The inline synopses ``nas run STUDY.yaml [--trials N] ...`` and ``nas findings STUDY.yaml --final ...``."""
    synopses = re.findall(r"`nas (\w+)\s+STUDY\.yaml ([^`]*)`", README)
    assert {name for name, _ in synopses} >= {"run", "findings"}
    for name, text in synopses:
        known = {flag for action in subcommand(name)._actions for flag in action.option_strings}
        flags = set(re.findall(r"--[a-z][\w-]*", text))
        assert flags and flags <= known, (name, sorted(flags - known))
    run_flags = set(re.findall(r"--[a-z][\w-]*", next(text for name, text in synopses if name == "run")))
    assert run_flags >= {"--trials", "--minutes", "--workers", "--backend", "--storage", "--seed", "--simulate"}


def test_the_defaults_the_readme_names():
    args = build_parser().parse_args(["dashboard", "s.yaml"])
    assert "port 8080" in README and args.port == 8080
    args = build_parser().parse_args(["findings", "s.yaml", "--final"])
    assert "[--seeds 3]" in README and args.seeds == 3 and args.genomes == 0
    assert "[--recheck-seeds 1]" in README and args.recheck_seeds == 1 and args.recheck is None
    args = build_parser().parse_args(["run", "s.yaml", "--backend", "ray"])
    assert args.backend == "ray" and args.ray_address is None  # without --ray-address: a local Ray runtime


def test_the_readme_lists_every_shipped_study_and_only_those():
    shipped = {path.stem for path in (ROOT / "studies").glob("*.yaml")}
    listed = README.split("Shipped studies:", 1)[1].split("Real images:", 1)[0]
    named = set(re.findall(r"`([a-z0-9][\w.-]*)`", listed)) - {"grid", "dataset.path"}  # a layout, a key
    assert named == shipped, (sorted(shipped - named), sorted(named - shipped))
    for path in re.findall(r"studies/[\w.-]+\.yaml", README):
        assert (ROOT / path).is_file(), path


def documented_default(text: str | None) -> str | None:
    """``(3)`` -> '3', ``(0 = out)`` -> '0'; a note such as ``(one entry may be -1)`` is no default (None)."""
    if text is None:
        return None
    value = text.split(" = ")[0]
    return None if " " in value else value


def as_written(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_the_op_table_has_a_row_per_op_and_the_registry_defaults():
    rows = [line.split("|")[1:4] for line in section("The search space").splitlines() if line.startswith("| `")]
    seen = set()
    for ops_cell, _what, attrs_cell in rows:
        ops = re.findall(r"`(\w+)`", ops_cell)
        assert ops and set(ops) <= set(REGISTRY), ops
        seen |= set(ops)
        attrs = {a: set() for op in ops for a in REGISTRY[op].attrs}
        for op in ops:
            for name, spec in REGISTRY[op].attrs.items():
                attrs[name].add(spec.default)
        for name, paren in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", attrs_cell):
            assert name in attrs, f"{ops}: README lists attribute {name!r}, the registry has {sorted(attrs)}"
            default = documented_default(paren or None)
            if default is not None:
                assert {as_written(d) for d in attrs[name]} == {default}, (ops, name, default, attrs[name])
    assert seen == set(REGISTRY), sorted(set(REGISTRY) - seen)


def test_pool_stride_defaults_to_the_kernel():
    """The table's "stride defaults to kernel": the registry's 0 means the kernel."""
    from search_space import Genome

    genome = Genome()
    x = genome.add("in", "input", shape=[2, 12])
    x = genome.add("pool", "pool", [x], kernel=3)
    genome.add("out", "output", [genome.add("head", "dense", [genome.add("flat", "flatten", [x])], out_features=2)])
    assert genome.validate().analyze()["pool"].shape == (2, 4)


def test_sqlite_storage_is_wal_with_a_60_s_busy_timeout_and_commits_without_fsync(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/study.db")
    with storage.engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") == 60_000  # milliseconds
        assert pragma("synchronous") == 1  # NORMAL (FULL is 2)


def test_a_postgresql_connection_is_pinged_after_10_s_idle():
    from nas.study.storage import IDLE_PING_S

    assert "pinged before use\n  only after 10 s idle" in README and IDLE_PING_S == 10  # behaviour: test_postgres


def test_another_hosts_trial_is_stale_after_ten_heartbeats_300_s_by_default():
    execution = parse_config(MINIMAL).execution
    assert execution.heartbeat_s == 30 and execution.stale_limit_s == 300
    assert parse_config({**MINIMAL, "execution": {"heartbeat_s": 5}}).execution.stale_limit_s == 50
    assert parse_config({**MINIMAL, "execution": {"stale_after_s": 90}}).execution.stale_limit_s == 90


def test_rungs_are_min_epochs_times_powers_of_the_factor_below_max_epochs():
    assert Pruner(min_epochs=2, max_epochs=18, reduction_factor=3).rungs() == [2, 6]
    assert Pruner(min_epochs=1, max_epochs=27, reduction_factor=3).rungs() == [1, 3, 9]
    assert Pruner(min_epochs=1, max_epochs=16, reduction_factor=2).rungs() == [1, 2, 4, 8]
    assert Pruner(name="none", min_epochs=1, max_epochs=27).rungs() == []


def test_the_dense_baseline_searches_the_documented_ranges():
    fixed = baseline_config(parse_config({**MINIMAL, "training": {"lr": 0.02},
                                          "pruner": {"min_epochs": 2, "max_epochs": 6}}))
    assert fixed.training.lr == FloatRange(low=0.002, high=0.06, log=True)  # [x/10, 3x] around a fixed x
    assert fixed.training.weight_decay == FloatRange(low=1e-6, high=1e-2, log=True)
    assert fixed.search_space == {"preset": "dense", "epochs": [6, 12]}  # 1x or 2x the study's epochs
    assert fixed.sampler.name == "tpe" and fixed.pruner.name == "none"
    ranged = baseline_config(parse_config({**MINIMAL, "training": {"lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                                                   "weight_decay": {"low": 1e-5, "high": 1e-3}}}))
    assert ranged.training.lr == FloatRange(low=1e-3, high=1e-2, log=True)  # the study's range stays
    assert ranged.training.weight_decay == FloatRange(low=1e-5, high=1e-3)


@pytest.mark.parametrize("changes, field", [
    ({"constraints": {"max_params": 100}}, "constraints.max_params"),
    ({"objectives": [{"metric": "val_accuracy", "direction": "maximize"}]}, "objectives"),
    ({"training": {"lr": 0.5}}, "training.lr"),
    ({"training": {"device": "auto", "trial_timeout_s": 5}}, None),
    ({"sampler": {"name": "random", "seed": 3}, "warm_start": ["mnist1d-cnn"], "budget": {"trials": 9},
      "execution": {"workers": 3, "backend": "ray"}, "baseline": {"trials": 5}, "enqueue": [{"stages": 1}]}, None),
])
def test_resume_fixes_the_documented_sections_and_frees_the_others(changes, field):
    from nas.study.plan import resume_conflict

    stored = parse_config(MINIMAL).model_dump(mode="json")
    conflict = resume_conflict(stored, parse_config({**MINIMAL, **changes}))
    assert (conflict[0] if conflict else None) == field


def test_the_code_map_states_the_import_rules_test_layout_enforces():
    from test_layout import MAY_IMPORT

    rows = [line.split("|")[1:4] for line in section("Code map").splitlines() if line.startswith("| `")]
    stated = {}
    for package, _what, may in rows:
        key = re.fullmatch(r"\s*`([\w/]+)/`\s*", package).group(1).replace("/", ".")
        stated[key] = set(re.findall(r"`([\w.]+)`", may.split("never")[0]))
    assert stated == {k: set(v) for k, v in MAY_IMPORT.items() if k != "nas"}


def test_every_file_the_readme_names_exists():
    tops = {"studies", "nas", "evaluators", "search_space", "benchmarks", "tests", "reports", ".ci"}
    named = set(re.findall(r"`([^`\s]+)`", README))
    paths = [n for n in named if n.split("/")[0] in tops and "/" in n or n == "FINDINGS.md"]
    assert len(paths) >= 20
    for path in paths:
        file, _, name = path.partition("::")
        assert (ROOT / file).exists(), path
        if name:
            assert re.search(rf"^{name} = ", (ROOT / file).read_text(), re.M), path
    for script in re.findall(r"`(\w+\.py)`", section("Results and benchmarks")):
        assert (ROOT / "benchmarks" / script).is_file(), script
    for package, what, _may in (line.split("|")[1:4] for line in section("Code map").splitlines()
                                if line.startswith("| `")):
        folder = ROOT / package.strip().strip("`")
        for part in re.findall(r"`([\w.]+(?:\.py|/))`", what):
            assert (folder / part).exists() or (folder / part).with_suffix("").is_dir(), (folder, part)
