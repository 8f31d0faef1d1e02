"""``nas export``: one trial's network as a bundle that runs without this project, checked before it is handed over.

The bundle: ``model.py`` (needs only torch, see :mod:`search_space.codegen`), ``weights.pt`` (a state dict for
``torch.load(weights_only=True)``), ``model.pt2`` (``torch.export``), optionally ``model.onnx``, ``genome.json``,
``manifest.json`` and ``README.md``. Export reads the study's storage and its weight artifacts and never writes
to them; every file's logits are compared with the in-project model's before the command reports success.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import platform
import uuid
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from search_space.codegen import Folding, fold_state_dict, folded_elements, model_source, plan_folding
from nas.errors import ConfigError
from search_space import Genome, build_model

FORMAT = "nas-explorer-export/1"
TOLERANCE = {"model.py": 1e-6, "model.pt2": 1e-6, "model.onnx": 1e-4}  # max |logit difference|, unfolded
FOLDED_TOLERANCE = 1e-5  # folding reorders float32 arithmetic
PROJECT = "nas-explorer"


@dataclass
class Bundle:
    """What ``write_bundle`` wrote and measured: the files, each file's worst logit difference, the fold."""

    out: Path
    files: list[str]
    parity: dict[str, float | None]       # file -> max |logits - in-project logits|; None: not checked
    fold: dict | None = None              # see ``fold_report``
    test_accuracy: float | None = None    # of the exported network on the test split, when data was given
    manifest: dict = field(default_factory=dict)


# -- the bundle ----------------------------------------------------------------------------------
def write_bundle(genome: Genome, state_dict: dict, out: str | Path, *, fold_bn: bool = False, onnx: bool = False,
                 manifest: dict | None = None, data=None, title: str = "") -> Bundle:
    """Writes the bundle for ``genome`` with the compiled model's ``state_dict`` and checks every file against it.

    ``data`` (a ``Splits``) adds real test inputs to the parity check and measures the test accuracy.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the bundle folder ({exc.strerror})") from None
    reference = build_model(genome)
    reference.load_state_dict(state_dict)
    reference.eval()
    folding = plan_folding(genome) if fold_bn else Folding()
    weights = fold_state_dict(genome, state_dict, folding) if fold_bn else \
        {k: v.detach().clone() for k, v in state_dict.items()}
    manifest = {"format": FORMAT, "input_shape": list(genome.input_shape),
                "classes": [str(i) for i in range(genome.num_classes)], **(manifest or {})}
    title = title or genome.summary()
    (out / "model.py").write_text(model_source(genome, folding, doc=title, header=_model_header(title, manifest,
                                                                                               fold_bn)))
    torch.save(weights, out / "weights.pt")
    genome.save(out / "genome.json")
    net = load_generated(out / "model.py", out / "weights.pt")
    inputs = parity_inputs(genome, data)
    with torch.no_grad():
        expected = reference(inputs)
        parity = {"model.py": _max_diff(net(inputs), expected)}
        example = inputs[:2]
        program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, out / "model.pt2")
        parity["model.pt2"] = _max_diff(torch.export.load(out / "model.pt2").module()(inputs), expected)
    files = ["model.py", "weights.pt", "model.pt2"]
    if onnx:
        parity["model.onnx"] = _write_onnx(net, example, inputs, expected, out / "model.onnx")
        files.append("model.onnx")
    scale = max(1.0, float(expected.abs().max()))
    for name, diff in parity.items():
        limit = (max(TOLERANCE[name], FOLDED_TOLERANCE) if fold_bn else TOLERANCE[name]) * scale
        if diff is not None and not diff <= limit:
            raise RuntimeError(f"{out / name}: logits differ from the in-project model by {diff:.3g} "
                               f"(tolerance {limit:.1g}); the export is wrong for genome {genome.key()}")
    bundle = Bundle(out, files + ["genome.json", "manifest.json", "README.md"], parity)
    if fold_bn:
        bundle.fold = fold_report(genome, folding, reference, net)
    if data is not None:
        from evaluators.training import evaluate

        bundle.test_accuracy = evaluate(net, data.x_test, data.y_test)[0]
    bundle.manifest = {**manifest, "fold_bn": bundle.fold, "parity": parity, "files": bundle.files,
                       "exported_test_accuracy": bundle.test_accuracy, "versions": versions()}
    (out / "manifest.json").write_text(json.dumps(bundle.manifest, indent=1) + "\n")
    (out / "README.md").write_text(readme(title, bundle.manifest))
    return bundle


def load_generated(model_py: Path, weights: Path) -> torch.nn.Module:
    """Imports a generated ``model.py`` under a fresh module name and calls its ``load``."""
    spec = importlib.util.spec_from_file_location(f"nas_export_{uuid.uuid4().hex}", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load(str(weights))


def parity_inputs(genome: Genome, data=None, random: int = 4, real: int = 64) -> torch.Tensor:
    """Seeded standard-normal inputs (the scale of normalized data), then up to ``real`` test samples."""
    inputs = torch.randn(random, *genome.input_shape, generator=torch.Generator().manual_seed(0))
    return inputs if data is None else torch.cat([inputs, data.x_test[:real]])


def _max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max())


def _write_onnx(net, example, inputs, expected, path: Path) -> float | None:
    """Exports with the dynamo exporter (one self-contained file); the difference, or None without onnxruntime."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--onnx needs the onnx and onnxscript packages ({exc.name} is missing): "
                          "pip install onnx onnxscript onnxruntime") from None
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                              input_names=["x"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
    finally:
        quiet.setLevel(level)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _max_diff(torch.from_numpy(session.run(None, {"x": inputs.numpy()})[0]), expected)


def fold_report(genome: Genome, folding: Folding, before: torch.nn.Module, after: torch.nn.Module) -> dict:
    """What folding saved: parameters counted on both networks; FLOPs (conv/dense multiply-adds) are unchanged,
    the per-sample BatchNorm multiply-adds are gone."""
    params_before = sum(p.numel() for p in before.parameters())
    params_after = sum(p.numel() for p in after.parameters())
    return {"folded": sorted([*folding.after, *folding.inside]), "kept": list(folding.kept),
            "params_before": params_before, "params_after": params_after,
            "params_saved": params_before - params_after, "flops": genome.flops,
            "bn_multiply_adds_saved": folded_elements(genome, folding)}


def versions() -> dict:
    try:
        project = metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        project = "unknown"
    return {"torch": torch.__version__, PROJECT: project, "python": platform.python_version()}


def _input_note(manifest: dict) -> str:
    dataset = manifest.get("dataset") or {}
    shape = ", ".join(map(str, manifest["input_shape"]))
    how = f" as the {dataset['name']} dataset yields them (normalized" + \
        (", features permuted" if dataset.get("permute") else "") + "; see manifest.json)" if dataset else ""
    return f"(N, {shape}) float32 inputs{how} -> (N, {len(manifest['classes'])}) logits"


def _model_header(title: str, manifest: dict, fold_bn: bool) -> str:
    folded = "\nBatchNorms that follow a conv or linear layer are folded into it (nas export --fold-bn).\n" \
        if fold_bn else ""
    return (f"{title}\n\nStandalone network: needs only torch. Generated by `nas export`; the layer classes are copied "
            f"from nas-explorer's\nsearch_space/layers.py. {_input_note(manifest)}.\n{folded}\n"
            "    import model\n    net = model.load()  # weights.pt next to this file, eval mode\n")


def readme(title: str, manifest: dict) -> str:
    """A title, what goes in and out, and the five-line usage snippet."""
    shape = ", ".join(map(str, manifest["input_shape"]))
    metrics = manifest.get("metrics") or {}
    scores = ", ".join(f"{k.replace('_accuracy', '')} accuracy {100 * v:.2f}%" for k, v in metrics.items()
                       if k.endswith("accuracy") and v is not None)
    snippet = [("import torch", ""), ("import model", "model.py in this folder"),
               ("net = model.load()", "weights.pt, eval mode"),
               (f"logits = net(torch.randn(8, {shape}))", f"(8, {len(manifest['classes'])}) logits"),
               ('program = torch.export.load("model.pt2").module()', "the same network without model.py")]
    width = max(len(code) for code, _ in snippet) + 2
    return "\n".join([
        f"# {title}", "", (f"Exported by `nas export`{': ' + scores if scores else ''}. "
                           f"{_input_note(manifest)}. Needs only torch."), "", "```python",
        *[(code.ljust(width) + "# " + note if note else code) for code, note in snippet], "```", "",
        "Files: " + ", ".join(f"`{f}`" for f in manifest["files"]) + ".", ""])
