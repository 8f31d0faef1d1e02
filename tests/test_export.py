"""nas export: bundles that run where only torch is installed and give the in-project model's logits."""
from __future__ import annotations

import ast
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from torch import nn

from evaluators.datasets import load_dataset
from nas.cli import main
from nas.export.bundle import load_generated, write_bundle
from nas.search.genomes import PRESETS, resolve_space, sample_genome
from nas.study.config import parse_config
from nas.study.plan import create_study
from search_space import Genome, GenomeError, build_model
from search_space.codegen import MERGES, Folding, model_source, plan_folding
from search_space.ops import REGISTRY
from search_space.zoo import ZOO
from conftest import scratch_dir, study_beside_storage
from test_search_space import OP_CASES, single_op

optuna.logging.set_verbosity(optuna.logging.WARNING)

SITE_PACKAGES = str(Path(torch.__file__).resolve().parents[1])
SAMPLED_SHAPES = [(40,), (1, 8, 8)]
PER_PRESET_AND_SHAPE = 2
ONNX_MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
ONNX_CASES = set() if ONNX_MISSING else {("fold-2d", False), ("fold-1d", True)}  # every op; seconds each

# Runs with -I -S: no user site, no PYTHONPATH, no script folder on sys.path and no .pth files, so the editable
# install of this project is not active; torch comes from the venv's site-packages, appended by hand.
ISOLATED_CHECK = r'''
import json, os, sys
sys.path.append(sys.argv[1])
import torch
for name in ("search_space", "nas", "evaluators"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable: the check is not isolated")
try:
    import onnxruntime
except ImportError:
    onnxruntime = None
results = {}
for folder in sys.argv[2:]:
    os.chdir(folder)
    sys.path.insert(0, folder)
    sys.modules.pop("model", None)
    import model
    sys.path.remove(folder)
    case = torch.load("case.pt", weights_only=True)
    x, expected = case["x"], case["logits"]
    with torch.no_grad():
        net = model.load()
        got = {"model.py": net(x), "model.pt2": torch.export.load("model.pt2").module()(x)}
        if os.path.exists("model.onnx") and onnxruntime is not None:
            session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
            got["model.onnx"] = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        row = {name: float((value - expected).abs().max()) for name, value in got.items()}
        if "x_test" in case:
            row["correct"] = int((net(case["x_test"]).argmax(1) == case["y_test"]).sum())
    row["batchnorms"] = sum("BatchNorm" in type(m).__name__ for m in net.modules())
    row["eval"] = not net.training
    results[folder] = row
print(json.dumps(results))
'''


def run_isolated(folders: list[Path]) -> dict[str, dict]:
    """One fresh interpreter that imports each folder's model.py and compares it with the folder's case.pt."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED_CHECK, SITE_PACKAGES, *map(str, folders)],
                          cwd=folders[0], capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def save_case(folder: Path, model: nn.Module, shape, data=None, batch: int = 2) -> None:
    """Random inputs and the in-project model's logits for them (plus the test split, when given)."""
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        case = {"x": x, "logits": model.eval()(x)}
    if data is not None:
        case.update(x_test=data.x_test, y_test=data.y_test)
    torch.save(case, folder / "case.pt")


# -- genomes: the zoo, sampled ones, and hand-built ones for every folding rule ------------------
def fold_genome_2d() -> Genome:
    g = Genome()
    x = g.add("input", "input", shape=[4, 6, 6])
    x = g.chain(x, [
        ("r1", "reduce", {"out_channels": 8, "order": "bn-act-conv", "act": "none"}),  # inner BN folds: no act
        ("r1_bn", "norm", {}),                                                         # into r1's 1x1 conv
        ("r2", "reduce", {"out_channels": 8, "order": "conv-bn-act", "act": "none"}),
        ("r2_bn", "norm", {}),                                                         # r2 ends with its conv
        ("r3", "reduce", {"out_channels": 8, "order": "bn-act-conv", "act": "relu"}),  # inner BN kept
        ("r3_bn", "norm", {}),
        ("r4", "reduce", {"out_channels": 8, "order": "conv-bn-act", "act": "relu"}),
        ("r4_bn", "norm", {}),                                                         # after an act: kept
        ("twist", "twist_conv", {"out_channels": 8, "iters": 2, "groups": 2, "pattern": "shuffle"}),
        ("twist_bn", "norm", {}),                                                      # iterated Twist: kept
        ("fconv", "factorized_conv", {"out_channels": 8, "kernel": 3, "bias": False}),
        ("fconv_bn", "norm", {})])
    y = g.chain(x, [("lowrank", "lowrank_conv", {"out_channels": 8, "kernel": 3, "rank": 2, "bias": False}),
                    ("lowrank_bn", "norm", {})])
    x = g.add("sum", "add", [x, y])
    c = g.add("c", "conv", [x], out_channels=8, kernel=3, groups=4, pattern="cycle", cycle=2, bias=False)
    c_bn = g.add("c_bn", "norm", [c])                                                 # c also feeds sum2: kept
    x = g.chain(g.add("sum2", "add", [c, c_bn]), [
        ("t1", "twist_conv", {"out_channels": 8, "stride": 2, "groups": 4, "pattern": "cycle", "cycle": 2}),
        ("t1_bn", "norm", {}),
        ("sep", "separable_conv", {"out_channels": 8, "kernel": 3, "bias": False}), ("sep_bn", "norm", {}),
        ("gap", "global_pool", {}), ("dense", "dense", {"out_features": 5, "bias": False}),
        ("dense_bn", "norm", {})])
    g.add("output", "output", [x])
    return g.validate()


def fold_genome_1d() -> Genome:
    g = Genome()
    x = g.chain(g.add("input", "input", shape=[40]), [
        ("in_bn", "norm", {}),                                                         # on the input: kept
        ("reshape", "reshape", {"shape": [4, -1]}),
        ("twist", "twist_conv", {"out_channels": 8, "groups": 2, "pattern": "cycle", "cycle": 2}),
        ("twist_bn", "norm", {}), ("act", "act", {"fn": "selu"}), ("perm", "permute", {"seed": 3}),
        ("conv", "conv", {"out_channels": 8, "kernel": 3, "dilation": 2, "bias": False}), ("conv_bn", "norm", {}),
        ("none_act", "act", {"fn": "none"}), ("pool", "pool", {"kind": "avg", "kernel": 3, "stride": 2}),
        ("flat", "flatten", {}), ("drop", "dropout", {"p": 0.1}), ("logits", "dense", {"out_features": 3})])
    g.add("output", "output", [x])
    return g.validate()


def sampled_genomes(preset: str, shape: tuple, count: int) -> list[Genome]:
    space = resolve_space({"preset": preset})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(shape)))
    genomes = []
    while len(genomes) < count:
        try:
            genomes.append(sample_genome(study.ask(), space, shape, 5).validate())
        except GenomeError:
            continue
    return genomes


def genome_cases() -> dict[str, Genome]:
    cases = {f"zoo-{name}": entry.build() for name, entry in ZOO.items()}
    for preset in PRESETS:
        for shape in SAMPLED_SHAPES:
            for i, genome in enumerate(sampled_genomes(preset, shape, PER_PRESET_AND_SHAPE)):
                cases[f"{preset}-{'x'.join(map(str, shape))}-{i}"] = genome
    cases["fold-2d"], cases["fold-1d"] = fold_genome_2d(), fold_genome_1d()
    return cases


CASES = genome_cases()


def with_batchnorm_statistics(genome: Genome, seed: int) -> nn.Module:
    """A compiled model whose BatchNorms have non-trivial affine weights and running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(genome)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, *genome.input_shape) * 2 + 0.5)
    return model.eval()


def holds_batchnorm(genome: Genome) -> bool:
    plan = plan_folding(genome)
    return bool(plan.after or plan.inside or plan.kept)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Every case exported with and without --fold-bn (without BatchNorms only once: --fold-bn changes nothing
    there, see the test), then checked in one isolated interpreter."""
    root = tmp_path_factory.mktemp("bundles")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folders, bundles = {}, {}
    try:
        for seed, (name, genome) in enumerate(CASES.items()):
            model = with_batchnorm_statistics(genome, seed)
            for fold in (False, True) if holds_batchnorm(genome) else (False,):
                folder = root / f"{name}-{'folded' if fold else 'plain'}"
                bundles[name, fold] = write_bundle(genome, model.state_dict(), folder, fold_bn=fold,
                                                   onnx=(name, fold) in ONNX_CASES)
                save_case(folder, model, genome.input_shape)
                folders[name, fold] = folder
    finally:
        torch.set_num_threads(threads)
    results = run_isolated(list(folders.values()))
    return {key: (bundles[key], results[str(folder)]) for key, folder in folders.items()}


@pytest.mark.parametrize("fold", [False, True], ids=["plain", "folded"])
@pytest.mark.parametrize("name", list(CASES))
def test_exported_bundle_matches_the_in_project_model(parity, name, fold):
    if fold and not holds_batchnorm(CASES[name]):  # the folded bundle would be the plain one, byte for byte
        genome = CASES[name]
        assert model_source(genome, plan_folding(genome), "d", "h") == model_source(genome, Folding(), "d", "h")
        return
    bundle, measured = parity[name, fold]
    tolerance = 1e-5 if fold else 1e-6
    assert measured["model.py"] <= tolerance and measured["model.pt2"] <= tolerance, measured
    assert measured["eval"]
    if (name, fold) in ONNX_CASES:
        assert measured["model.onnx"] <= 1e-4
    kept = plan_folding(CASES[name]).kept if fold else ()
    batchnorms = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in build_model(CASES[name]).modules())
    assert measured["batchnorms"] == (len(kept) if fold else batchnorms)
    assert (bundle.fold is not None) == fold


def test_folding_plan_follows_the_rules():
    plan = plan_folding(CASES["fold-2d"])
    assert plan.after == {"r1_bn": "r1", "r2_bn": "r2", "r3_bn": "r3", "fconv_bn": "fconv", "lowrank_bn": "lowrank",
                          "t1_bn": "t1", "sep_bn": "sep", "dense_bn": "dense"}
    assert plan.inside == {"r1", "r2", "r4"}
    assert set(plan.kept) == {"r3", "r4_bn", "twist_bn", "c_bn"}
    plan_1d = plan_folding(CASES["fold-1d"])
    assert plan_1d.after == {"twist_bn": "twist", "conv_bn": "conv"} and plan_1d.kept == ("in_bn",)


def test_folding_removes_every_batchnorm_of_the_convtwist_block(parity):
    bundle, measured = parity["zoo-convtwist-block", True]
    assert measured["batchnorms"] == 0
    fold = bundle.fold
    assert fold["folded"] == ["expand_bn", "reduce", "stem_bn", "twist_bn"] and fold["kept"] == []
    # four BNs lose gamma and beta; stem, expand and twist (bias=False) gain a bias, reduce's 1x1 conv one too
    assert fold["params_saved"] == 2 * (64 + 32 + 32 + 64) - (64 + 32 + 32 + 64)
    assert fold["bn_multiply_adds_saved"] == (64 + 32 + 32 + 64) * 32 * 32


def test_every_op_has_an_export_case():
    assert {op for _, op, _ in OP_CASES.values()} == set(REGISTRY) - {"input", "output", *MERGES}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_every_op_exports_source_that_computes_the_same_function(case, tmp_path):
    """Each op's registry entry writes a layer whose logits equal the compiled layer's (same weights)."""
    shape, op, attrs = OP_CASES[case]
    genome = single_op(shape, op, **attrs).validate()
    torch.manual_seed(0)
    reference = build_model(genome).eval()
    (tmp_path / "model.py").write_text(model_source(genome, Folding(), doc="doc", header="header"))
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    x = torch.randn(5, *genome.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(load_generated(tmp_path / "model.py", tmp_path / "weights.pt")(x), reference(x),
                                   rtol=0, atol=1e-6)


def test_model_py_imports_only_torch_and_reads_like_code():
    source = model_source(ZOO["multi-perm-cnn"].build((256,), 10), Folding(), doc="doc", header="header")
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "pathlib", "typing", "math", "torch"}
    assert "x = torch.cat([b0, b1, b2], dim=1)" in source and "b1 = self.b1_conv0(b1)" in source
    assert "class Permute(nn.Module)" in source and "def seeded_permutation" in source
    assert "class TwistConv" not in source and "lsuv" not in source  # only what the genome uses


def test_onnx_checks_run():
    """The ONNX checks above and below are left out without these packages; say so in the test report."""
    if ONNX_MISSING:
        pytest.skip(f"ONNX parity not checked: {', '.join(ONNX_MISSING)} not installed "
                    "(pip install onnx onnxscript onnxruntime)")
    assert ONNX_CASES


# -- a real study --------------------------------------------------------------------------------
STUDY = {"name": "ex", "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300},
         "search_space": {"preset": "perm-cnn-1d"}, "pruner": {"name": "none", "min_epochs": 2, "max_epochs": 2},
         "training": {"lr": 0.01, "batch_size": 64}, "budget": {"trials": 3}, "baseline": {"trials": 0},
         "execution": {"workers": 1}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny real search; yields its folder, YAML, storage URL and the loaded study."""
    root = tmp_path_factory.mktemp("study")
    path, url = study_beside_storage(root, STUDY)
    with scratch_dir(root):
        assert main(["run", str(path)]) == 0
        yield {"root": root, "yaml": str(path), "url": url,
               "study": optuna.load_study(study_name="ex", storage=url)}


def in_project_model(study: dict, trial: optuna.trial.FrozenTrial) -> nn.Module:
    """The trial's genome compiled here, with the weights its artifact holds."""
    target = study["root"] / f"trial-{trial.number}.pt"
    target.unlink(missing_ok=True)
    download_artifact(artifact_store=FileSystemArtifactStore(study["root"] / "artifacts"),
                      artifact_id=trial.user_attrs["weights_artifact"], file_path=str(target))
    model = build_model(Genome.from_json(trial.user_attrs["genome"]))
    model.load_state_dict(torch.load(target, weights_only=True))
    return model.eval()


def test_study_export_runs_alone_and_scores_its_test_accuracy(study, capsys):
    out = study["root"] / "bundle"
    assert main(["export", study["yaml"], "--out", str(out), *([] if ONNX_MISSING else ["--onnx"])]) == 0
    assert "exported trial" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    trials = {t.number: t for t in study["study"].get_trials()}
    best = max((t for t in trials.values() if t.user_attrs.get("val_accuracy") is not None),
               key=lambda t: t.user_attrs["val_accuracy"])
    assert manifest["metrics"]["val_accuracy"] == best.user_attrs["val_accuracy"]
    chosen = trials[manifest["trial"]]
    data = load_dataset({k: v for k, v in manifest["dataset"].items() if k not in ("normalization", "permutation")})
    assert manifest["input_shape"] == [32] and manifest["classes"] == data.classes
    assert manifest["dataset"]["normalization"] == data.normalization
    assert manifest["metrics"]["params"] == chosen.user_attrs["params"] and manifest["seed"] == chosen.number
    assert set(manifest["versions"]) >= {"torch", "nas-explorer"}
    assert torch.load(out / "weights.pt", weights_only=True).keys() == \
        in_project_model(study, chosen).state_dict().keys()
    assert len((out / "README.md").read_text().split("```python")[1].split("```")[0].strip().splitlines()) == 5
    folded = study["root"] / "folded"
    assert main(["export", study["yaml"], "--out", str(folded), "--fold-bn", "--trial", str(chosen.number)]) == 0
    assert "--fold-bn: folded" in capsys.readouterr().out
    for folder in (out, folded):
        save_case(folder, in_project_model(study, chosen), (32,), data, batch=8)
    results = run_isolated([out, folded])
    plain, fold = results[str(out)], results[str(folded)]
    assert plain["model.py"] <= 1e-6 and plain["model.pt2"] <= 1e-6 and plain.get("model.onnx", 0.0) <= 1e-4
    assert ("model.onnx" in plain) == (not ONNX_MISSING)
    assert fold["model.py"] <= 1e-5 and fold["model.pt2"] <= 1e-5
    assert plain["correct"] / len(data.y_test) == manifest["metrics"]["test_accuracy"]


def test_missing_weights_are_one_error_line_unless_retrain(study, tmp_path, monkeypatch, capsys):
    with sqlite3.connect(study["root"] / "study.db") as source, sqlite3.connect(tmp_path / "study.db") as copy:
        source.backup(copy)  # WAL included; the copy has no artifacts folder next to it
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/study.db"
    assert main(["export", "ex", "--storage", url, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no saved weights" in err and "--retrain" in err
    assert not (tmp_path / "b" / "model.py").exists()
    assert main(["export", "ex", "--storage", url, "--out", str(tmp_path / "b"), "--retrain"]) == 0
    assert "retraining it at full budget" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["weights"].startswith("retrained") and manifest["exported_test_accuracy"] == \
        manifest["metrics"]["test_accuracy"]


def test_max_params_exports_the_most_accurate_trial_within_the_size(study, tmp_path, capsys):
    full = [t for t in study["study"].get_trials() if t.state == optuna.trial.TrialState.COMPLETE
            and "infeasible" not in t.user_attrs]
    sizes = sorted({t.user_attrs["params"] for t in full})
    limit = sizes[len(sizes) // 2]  # the middle size: some trained trials fit, some do not
    fitting = [t for t in full if t.user_attrs["params"] <= limit]
    assert 0 < len(fitting) < len(full)
    out = tmp_path / "small"
    assert main(["export", study["yaml"], "--out", str(out), "--max-params", str(limit)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["params"] <= limit
    assert manifest["metrics"]["val_accuracy"] == max(t.user_attrs["val_accuracy"] for t in fitting)


@pytest.mark.parametrize("argv, message", [
    (["--trial", "99"], "has no trial 99"),
    (["--max-params", "10"], "no Pareto trial is that small"),
])
def test_bad_choice_exits_2_with_one_line(study, argv, message, tmp_path, capsys):
    assert main(["export", study["yaml"], "--out", str(tmp_path / "b"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_study_without_finished_trials_exits_2(study, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/empty.db"
    create_study(parse_config({**STUDY, "name": "empty"}), url)
    assert main(["export", "empty", "--storage", url, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no trial trained at full budget" in err
