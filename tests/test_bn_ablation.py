"""scripts/bn_ablation.py runs a tiny ablation and writes its figure and table."""
import json
import os

import pytest
from scriptload import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")

bn_ablation = load_script("bn_ablation")


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "mnist")), reason="the shared MNIST files are not here")
def test_ablation_writes_figure_table_and_results(tmp_path, capsys):
    out = str(tmp_path / "ablation")
    assert bn_ablation.main(["--models", "mnist_bn", "--data-dir", DATA, "--lrs", "1e-3", "--inits", "small", "pytorch",
                             "--steps", "4", "--eval-every", "2", "--limit", "128", "--test-limit", "50",
                             "--out", out]) == 0
    runs = json.load(open(os.path.join(out, "results.json")))["runs"]
    assert [(r["init"], r["batch_norm"]) for r in runs] == [("small", True), ("small", False),
                                                           ("pytorch", True), ("pytorch", False)]
    for run in runs:
        assert len(run["losses"]) == 4 and [step for step, _ in run["evaluations"]] == [0, 2, 4]
        assert 0 <= run["final_test_accuracy"] <= 1 and run["final_test_accuracy"] == run["evaluations"][-1][1]
    # a run is reproducible: the same setting, seed and batches give the same losses
    again = bn_ablation.train_run("mnist_bn", True, 1e-3, "small", *[bn_ablation.load("mnist_bn", split,
                                  bn_ablation.parse_args(["--data-dir", DATA]), n) for split, n in
                                  (("train", 128), ("test", 50))], bn_ablation.parse_args(["--steps", "4",
                                  "--eval-every", "2"]))
    assert again[0] == runs[0]["losses"]
    table = open(os.path.join(out, "results.md")).read()
    assert table.count("| mnist_bn |") == 4 and "steps to target" in table
    assert open(os.path.join(out, "mnist_bn.png"), "rb").read(4) == b"\x89PNG"


def test_summary_flags_divergence_and_chance():
    finite = bn_ablation.summarise("mnist_bn", True, 1e-3, "small", [2.3] * 30, [(0, 0.1), (30, 0.98)], 1.0)
    assert finite["steps_to_target"] == 30 and not finite["diverged"] and not finite["at_chance"]
    exploded = bn_ablation.summarise("mnist_bn", False, 1e-2, "small", [2.3] * 10 + [float("nan")], [(0, 0.1)], 1.0)
    assert exploded["diverged"] and exploded["at_chance"] and exploded["steps_to_target"] is None
