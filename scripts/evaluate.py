"""Evaluate a checkpoint of scripts/train.py: test accuracy, accuracy per class and the confusion matrix.

    python scripts/evaluate.py runs/mnist_bn-seed/checkpoint.npz
    python scripts/evaluate.py runs/x/checkpoint.npz --data-dir ../shared/data/mnist --out confusion.png
    python scripts/evaluate.py runs/cats/checkpoint.npz --data-dir my-photos   # my-photos/cats/*.jpg ...

The model is rebuilt as the run built it, loaded with the checkpoint's
weights and BatchNorm running averages, and run in eval mode over the run's
test split, or over ``--data-dir``: the data set's own files, or a folder
with one subfolder per class (named as the model's classes; some may be
missing), whose images are prepared as ``predict.py`` prepares one. The
confusion matrix (rows: true class, columns: predicted) is printed and saved
as a PNG next to the checkpoint unless ``--out`` says where. A model that
outputs NaN gets a warning and exit status 1 instead of an accuracy.
"""
import os
import sys

import numpy as np

from models import cli, datasets, inference, training


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
    """The matrix as a PNG; False (and no file) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
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
    return True


def test_set(args, run, checkpoint):
    classes = list(checkpoint["classes"])
    if args.data_dir and datasets.is_class_folder(args.data_dir, classes):
        shape = tuple(checkpoint.get("input_shape") or datasets.input_shape(run.dataset, run.image_size))
        with cli.user_files(f"reading the class folders of --data-dir {args.data_dir}"):
            return datasets.class_folder(args.data_dir, run.dataset, shape, classes)
    if args.data_dir:
        run.data_dir, run.sample = args.data_dir, False
    with cli.user_files(f"loading the {run.dataset} test data"):
        dataset = datasets.load(run.dataset, "test", run.data_dir, run.image_size, sample=run.sample or False)
    return training.limited(dataset, args.limit or getattr(run, "test_limit", None))  # the run's own, by default


def main(argv):
    parser = cli.Parser(prog="evaluate.py", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", help="the test data: the data set's files, or one folder per class")
    parser.add_argument("--device", type=cli.device, default="cpu")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="evaluate on the first N test images only (default: as many as the run's --test-limit)")
    parser.add_argument("--out", help="PNG for the confusion matrix (default: confusion.png beside the checkpoint)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise cli.DataError(f"no such checkpoint {args.checkpoint}")
    checkpoint, run, model = inference.load_run(args.checkpoint, args.device)
    dataset = test_set(args, run, checkpoint)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "confusion.png")
    training.check_writable(os.path.dirname(os.path.abspath(out)))
    _, _, logits = training.evaluate(model, dataset, inference.preparer(checkpoint, run, args.device),
                                     4 * run.batch_size, args.device)
    where = args.data_dir or f"{run.dataset} test split"
    print(f"{run.model} after {checkpoint['epoch']} epochs, {len(logits)} images from {where}")
    broken = np.isnan(logits).any(axis=1)
    if broken.any():
        print(f"evaluate.py: warning: the model outputs NaN for {broken.sum()} of {len(logits)} images, so "
              "there is no accuracy to report (its weights diverged during training? try a lower --lr)",
              file=sys.stderr)
        return 1
    class_names = list(checkpoint["classes"])
    counts = confusion_matrix(dataset.arrays[1], logits.argmax(axis=1), len(class_names))
    print(format_report(counts, class_names))
    if plot_confusion(counts, class_names, out):
        print(f"\nconfusion matrix saved to {out}")
    else:
        print("\n(no PNG of the confusion matrix: matplotlib is not installed; pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
