"""Does the permuted Fashion-MNIST result hold on seeds nobody chose? A check against tuning to one draw.

Usage: ``python benchmarks/hidden_seeds.py [--study FILE] [--draw N] [--minutes M] [--baseline-trials T]
[--write-findings]``

Draws a data seed (which images go to validation), a pixel permutation seed, a ``train_samples`` size and a
sampler seed at random (from ``--draw N`` when given, to rerun one draw), writes the shipped study (``--study``,
default ``studies/permuted-fashion.yaml``; it must have run, its storage is read) with those four keys replaced and
a smaller budget under ``runs/hidden/``, runs it with ``nas run`` and compares its direction with the shipped
study's, on validation only:

1. the seed's claim: the fewest parameters of a searched genome within 2 (and 1) points of the best dense
   network's accuracy, against that dense network's parameters;
2. the tuned dense front: at how many points of the dense front the searched front needs fewer parameters;
3. every design choice with at least two trained trials on each side: does its front rise or fall with it?
"""
from __future__ import annotations

import argparse
import random
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import write_section  # noqa: E402
from nas.study.storage import load_with_baseline  # noqa: E402
from nas.study.summary import params_reference  # noqa: E402
from reports.findings import Scored, choice_rows, front, ratios_at_matched_accuracy, scored  # noqa: E402

SHIPPED = ROOT / "studies" / "permuted-fashion.yaml"
FINDINGS = ROOT / "FINDINGS.md"
SECTIONS = {"permuted-fashion": "## Hidden seeds: permuted Fashion-MNIST on a draw nobody chose"}


@dataclass(frozen=True)
class Direction:
    """The shape of a study's result that should not depend on the draw."""

    best_dense: tuple[int, float]  # (params, val accuracy)
    within_2: tuple[int, float] | None  # fewest-params searched genome within 2 points of the best dense
    within_1: tuple[int, float] | None
    dense_front_points: int
    searched_fewer: int  # dense front points the searched front reaches with fewer parameters
    choices: dict[str, bool]  # choice -> its front is higher with it (only choices with >= 2 trials each side)
    trained: int


def draw(number: int) -> dict:
    """The four hidden keys from one number: reproducible when the number is given, unknown before it is drawn."""
    rng = random.Random(number)
    return {"seed": rng.randrange(1, 10**6), "permute_seed": rng.randrange(1, 10**7),
            "train_samples": rng.randrange(10_000, 20_001, 1_000), "sampler_seed": rng.randrange(1, 10**6)}


def hidden_config(shipped: dict, keys: dict, minutes: float, baseline_trials: int, tag: str) -> dict:
    """The shipped study's config with the four hidden keys, a smaller budget and its own storage."""
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in shipped.items()}
    config["name"] = f"{shipped['name']}-hidden-{tag}"
    config["dataset"].update(seed=keys["seed"], permute_seed=keys["permute_seed"], train_samples=keys["train_samples"])
    config["sampler"]["seed"] = keys["sampler_seed"]
    config["budget"]["minutes"] = minutes
    config["baseline"]["trials"] = baseline_trials
    config["storage"] = f"sqlite:///runs/hidden/{config['name']}/study.db"
    return config


def within(points: list[Scored], accuracy: float) -> tuple[int, float] | None:
    reaching = [p for p in points if p.val_accuracy >= accuracy]
    best = min(reaching, key=lambda p: (p.params, -p.val_accuracy), default=None)
    return None if best is None else (best.params, best.val_accuracy)


def direction(name: str, url: str) -> Direction:
    study, baseline = load_with_baseline(name, url)
    if baseline is None:
        raise SystemExit(f"study {name!r} in {url} has no dense baseline to compare with")
    searched, dense = scored(study.get_trials(deepcopy=False)), scored(baseline.get_trials(deepcopy=False))
    if not searched or not dense:
        raise SystemExit(f"study {name!r}: {len(searched)} searched and {len(dense)} dense trials trained at full "
                         f"budget; both are needed")
    top = max(dense, key=lambda p: (p.val_accuracy, -p.params))
    choices = {r.choice: r.hv_with > r.hv_without for r in choice_rows(searched, params_reference(study))
               if r.with_trials >= 2 and r.without_trials >= 2}
    return Direction((top.params, top.val_accuracy), within(searched, top.val_accuracy - 0.02),
                     within(searched, top.val_accuracy - 0.01), len(front(dense)),
                     sum(1 for r in ratios_at_matched_accuracy(searched, dense) if r[3] > 1), choices, len(searched))


def ratio_cell(best_dense: tuple[int, float], point: tuple[int, float] | None) -> str:
    if point is None:
        return "none reached"
    return f"{best_dense[0] / point[0]:.1f}x fewer ({point[0]:,} params, {100 * point[1]:.1f}%)"


def table(shipped: Direction, hidden: Direction) -> tuple[list[str], int, int]:
    """Rows comparing the two directions, with how many of the compared statements agree."""
    def claim(d: Direction, point) -> bool:
        return point is not None and d.best_dense[0] / point[0] > 1

    rows = [("best dense (val)", *(f"{d.best_dense[0]:,} params, {100 * d.best_dense[1]:.1f}%"
                                   for d in (shipped, hidden)), None),
            ("searched genome within 2 points: fewer params than the best dense",
             ratio_cell(shipped.best_dense, shipped.within_2), ratio_cell(hidden.best_dense, hidden.within_2),
             claim(shipped, shipped.within_2) == claim(hidden, hidden.within_2)),
            ("searched genome within 1 point: fewer params than the best dense",
             ratio_cell(shipped.best_dense, shipped.within_1), ratio_cell(hidden.best_dense, hidden.within_1),
             claim(shipped, shipped.within_1) == claim(hidden, hidden.within_1)),
            ("dense front points the searched front reaches with fewer params",
             f"{shipped.searched_fewer} of {shipped.dense_front_points}",
             f"{hidden.searched_fewer} of {hidden.dense_front_points}",
             (2 * shipped.searched_fewer < shipped.dense_front_points)
             == (2 * hidden.searched_fewer < hidden.dense_front_points))]
    for choice in sorted(set(shipped.choices) & set(hidden.choices)):
        rows.append((f"front higher with: {choice}", *("yes" if d.choices[choice] else "no" for d in (shipped, hidden)),
                     shipped.choices[choice] == hidden.choices[choice]))
    lines = ["| statement | shipped study | hidden draw | same direction |", "|---|---|---|---|"]
    lines += [f"| {s} | {a} | {b} | {'-' if same is None else ('yes' if same else 'NO')} |" for s, a, b, same in rows]
    compared = [same for *_, same in rows if same is not None]
    return lines, sum(compared), len(compared)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=SHIPPED, help="the shipped study to check (default: "
                        "studies/permuted-fashion.yaml; it must have run)")
    parser.add_argument("--draw", type=int, help="rerun this draw (default: a fresh random one)")
    parser.add_argument("--minutes", type=float, default=11.0, help="search budget (the baseline runs first)")
    parser.add_argument("--baseline-trials", type=int, default=12)
    parser.add_argument("--write-findings", action="store_true", help=f"write the comparison to {FINDINGS.name}")
    args = parser.parse_args()
    number = secrets.randbelow(10**9) if args.draw is None else args.draw
    keys, tag = draw(number), f"draw-{number}"
    shipped_config = yaml.safe_load(args.study.read_text())
    config = hidden_config(shipped_config, keys, args.minutes, args.baseline_trials, tag)
    folder = ROOT / "runs" / "hidden" / config["name"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"draw {number}: {keys} -> {path}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=ROOT, check=True)
    minutes = (time.monotonic() - started) / 60
    shipped = direction(shipped_config["name"], shipped_config["storage"])
    hidden = direction(config["name"], config["storage"])
    lines, agree, compared = table(shipped, hidden)
    command = shlex.join(["python", "benchmarks/hidden_seeds.py", *sys.argv[1:]])
    study = "" if args.study == SHIPPED else f"--study {args.study} "
    section = SECTIONS.get(shipped_config["name"], f"## Hidden seeds: {shipped_config['name']} on a draw nobody chose")
    body = [section, "",
            f"Command: `{command}` (rerun this draw: `python benchmarks/hidden_seeds.py {study}--draw {number} "
            f"--minutes {args.minutes:g} --baseline-trials {args.baseline_trials}`). The draw was made at run time: "
            f"data seed {keys['seed']}, permutation seed {keys['permute_seed']}, train_samples "
            f"{keys['train_samples']:,}, sampler seed {keys['sampler_seed']}; {args.baseline_trials} dense baseline "
            f"trials and a {args.minutes:g}-minute search, {minutes:.1f} minutes in all on 2 cores "
            f"({hidden.trained} searched trials trained at full budget; the shipped study {shipped.trained}). "
            f"Validation only.", "", *lines, "",
            f"{agree} of {compared} statements point the same way on the hidden draw as on the shipped study."]
    print("\n".join(body))
    if args.write_findings:
        write_section("\n".join(body), FINDINGS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
