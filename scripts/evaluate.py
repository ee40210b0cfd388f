"""Evaluate a checkpoint of scripts/train.py: test accuracy, accuracy per class and the confusion matrix.

    python scripts/evaluate.py runs/mnist_bn-seed/checkpoint.npz
    python scripts/evaluate.py runs/x/checkpoint.npz --data-dir ../shared/data/mnist --out confusion.png

The model is rebuilt as the run built it, loaded with the checkpoint's
weights and BatchNorm running averages, and run in eval mode over the test
split. The confusion matrix (rows: true class, columns: predicted) is
printed and saved as a PNG next to the checkpoint unless ``--out`` says where.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minigrad as mg  # noqa: E402
from train import Trainer, read_checkpoint  # noqa: E402


def confusion_matrix(labels, predictions, classes):
    """counts[i, j]: test images of class i predicted as class j."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def format_report(counts, class_names):
    per_class = counts.diagonal() / np.maximum(counts.sum(axis=1), 1)
    width = max(len(name) for name in class_names) + 2
    lines = [f"test accuracy {counts.trace() / counts.sum():.4f} ({counts.trace()} of {counts.sum()})", "",
             "accuracy per class:"]
    lines += [f"  {name:{width}} {accuracy:.4f}  ({counts[i].sum()} images)"
              for i, (name, accuracy) in enumerate(zip(class_names, per_class))]
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * width + "".join(f"{i:>6}" for i in range(len(class_names)))]
    lines += [f"{i:>{width - 2}}  " + "".join(f"{c:6d}" for c in row) for i, row in enumerate(counts)]
    return "\n".join(lines)


def plot_confusion(counts, class_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    size = max(4.0, 0.6 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > counts.max() / 2 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", help="where the test data is, if not where the run found it")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="PNG for the confusion matrix (default: confusion.png beside the checkpoint)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.checkpoint):
        raise SystemExit(f"evaluate.py: no such checkpoint {args.checkpoint}")
    checkpoint = read_checkpoint(args.checkpoint)
    run = argparse.Namespace(**json.loads(checkpoint["args"]))
    run.device = args.device
    if args.data_dir:
        run.data_dir = args.data_dir
    trainer = Trainer(run, train=False)
    trainer.model.load_state_dict(checkpoint["model"])
    if run.standardize:
        # the training images' statistics, saved as NumPy arrays (mg.load keeps them so)
        trainer.mean, trainer.std = np.asarray(checkpoint["mean"]), np.asarray(checkpoint["std"])
    _, _, predictions = trainer.evaluate()
    class_names = list(checkpoint["classes"])
    counts = confusion_matrix(trainer.test_set.arrays[1], predictions, len(class_names))
    print(f"{run.model} after {checkpoint['epoch']} epochs, {len(predictions)} {run.dataset} test images")
    print(format_report(counts, class_names))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "confusion.png")
    plot_confusion(counts, class_names, out)
    print(f"\nconfusion matrix saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
