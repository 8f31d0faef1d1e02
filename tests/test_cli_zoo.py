"""``nas zoo`` and ``nas genome``: what a user sees and the exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

from nas.cli import main
from search_space import get_zoo


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_show_json_defaults_to_the_seed_shape(capsys):
    code, out, _ = run(capsys, "zoo", "show", "multi-perm-cnn", "--json")
    report = json.loads(out)
    assert code == 0 and report["name"] == "multi-perm-cnn" and report["params"] == 285_028
    assert report["input_shape"] == [3072]


def test_zoo_show_for_another_input(capsys):
    code, out, _ = run(capsys, "zoo", "show", "lenet5", "--input-shape", "1,32,32", "--classes", "4", "--json")
    report = json.loads(out)
    assert code == 0 and report["input_shape"] == [1, 32, 32] and report["classes"] == 4
    # multiply-adds by hand: conv 6x32x32x25, conv 16x12x12x(25x6), dense 576x120, 120x84, 84x4
    assert report["flops"] == 153_600 + 345_600 + 69_120 + 10_080 + 336
    code, out, _ = run(capsys, "zoo", "show", "mnist1d-cnn", "--features", "64", "--json")
    assert json.loads(out)["input_shape"] == [64]


def test_zoo_list_names_every_model(capsys):
    code, out, _ = run(capsys, "zoo", "list", "--json")
    names = [row["name"] for row in json.loads(out)]
    assert code == 0 and "all-cnn-c" in names and "convtwist-block" in names


def test_unknown_zoo_model_exits_2_with_the_valid_names(capsys):
    code, out, err = run(capsys, "zoo", "show", "resnet")
    assert code == 2 and err.count("\n") == 1 and "'resnet'" in err and "perm-cnn" in err


def test_genome_show_valid_and_invalid(tmp_path, capsys):
    good = tmp_path / "good.json"
    get_zoo("mnist1d-cnn").build().save(good)
    code, out, _ = run(capsys, "genome", "show", str(good), "--json")
    assert code == 0 and json.loads(out)["params"] == 5210
    data = json.loads(good.read_text())
    next(n for n in data["nodes"] if n["id"] == "conv1")["groups"] = 4  # 25 channels do not split in 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, _, err = run(capsys, "genome", "show", str(bad))
    assert code == 2 and err.count("\n") == 1 and "'conv1'" in err and "groups" in err


def test_console_script_runs_without_traceback(tmp_path):
    missing = tmp_path / "nope.json"
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "genome", "show", str(missing)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope.json" in proc.stderr


def test_zoo_train_with_reorder_puts_the_recovered_order_in_front(capsys, workdir):
    """On shuffled MNIST-1D the chain recovers the order, so a few epochs of the CNN already beat the shuffled run."""
    args = ("zoo", "train", "mnist1d-cnn", "--dataset", "mnist1d:permute", "--epochs", "8", "--json")
    code, out, _ = run(capsys, *args)
    assert code == 0
    shuffled = json.loads(out)
    code, out, _ = run(capsys, *args, "--reorder", "chain")
    reordered = json.loads(out)
    assert code == 0 and reordered["params"] == shuffled["params"] == 5_210  # the order costs no parameter
    assert reordered["val_accuracy"] > shuffled["val_accuracy"] + 0.1  # 15 epochs: 87.4% against 55.8%
    code, _, err = run(capsys, "zoo", "train", "mnist1d-cnn", "--dataset", "mnist1d", "--reorder", "grid")
    assert code == 2 and "--reorder grid: needs an image input" in err and "\n" not in err.strip()


def test_insert_after_keeps_every_reader_and_its_slot():
    genome = get_zoo("multi-perm-cnn").build()
    inserted = genome.insert_after(genome.input_node, "reorder", "reorder", order=list(range(3072))[::-1])
    assert set(inserted.graph.successors("reorder")) == set(genome.graph.successors(genome.input_node))
    assert list(inserted.graph.successors(genome.input_node)) == ["reorder"]
    assert inserted.validate().params == genome.params and genome.key() != inserted.key()
