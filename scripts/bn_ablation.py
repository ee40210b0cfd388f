"""Measure the seeds' claims about BatchNorm: the same network trained with and without it.

    python scripts/bn_ablation.py --data-dir ../shared/data          # mnist_bn and cifar_bn
    python scripts/bn_ablation.py --models mnist_bn --lrs 5e-4 1e-2 --steps 200

For each model, learning rate and initialisation, the network is trained
twice from the same seed on the same batches, once with its BatchNorm layers
and once without, and its test accuracy is measured every ``--eval-every``
steps (in eval mode, on the first ``--test-limit`` test images). Written to
``--out``: ``<model>.png`` (test accuracy and training loss against steps, one
panel per learning rate and initialisation), ``results.json`` and
``results.md``, a table with, per run, the steps needed to reach the target
accuracy, the final test accuracy, and whether training diverged (a loss that
became NaN or infinite, or ended 1.5 times above where it started) or
stayed at chance (a final accuracy under 1.5 times chance).

The two initialisations: ``small`` is seed 004's (normal, std 0.01, biases
0.01), which makes deep signals fade without normalisation; ``pytorch`` is
PyTorch's default, scaled to each layer's fan-in.
"""
import json
import math
import os
import sys
import time

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
import models
from models import cli, datasets, training

# model -> (data folder under --data-dir, target test accuracy, the init names for "small" and "pytorch")
SETUPS = {"mnist_bn": ("mnist", 0.97, {"small": "seed", "pytorch": "pytorch"}),
          "cifar_bn": ("cifar-10-batches-py", 0.35, {"small": "small", "pytorch": "pytorch"})}


def parse_args(argv=None):
    parser = cli.Parser(prog="bn_ablation.py", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--data-dir", help="folder holding mnist/ and cifar-10-batches-py/")
    parser.add_argument("--lrs", nargs="+", type=cli.positive_float, default=[5e-4, 2e-3, 1e-2])
    parser.add_argument("--inits", nargs="+", default=["small", "pytorch"], choices=["small", "pytorch"])
    parser.add_argument("--steps", type=cli.positive_int, default=300, help="training steps per run")
    parser.add_argument("--eval-every", type=cli.positive_int, default=50)
    parser.add_argument("--test-limit", type=cli.positive_int, default=2000)
    parser.add_argument("--limit", type=cli.positive_int, help="train on the first N training images only")
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0)
    parser.add_argument("--out", default="runs/bn_ablation")
    return parser.parse_args(argv)


def load(name, split, args, limit):
    folder = os.path.join(args.data_dir, SETUPS[name][0]) if args.data_dir else None
    dataset_name = models.DEFAULTS[name]["dataset"]
    with cli.user_files(f"loading the {dataset_name} {'training' if split == 'train' else split} data for {name}"):
        dataset = datasets.load(dataset_name, split, folder)
    return [a[:limit] for a in dataset.arrays] if limit else list(dataset.arrays)


def accuracy(model, images, labels, batch_size=500):
    model.eval()
    correct = 0
    with mg.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(mg.tensor(images[start:start + batch_size]))
            correct += int((logits.argmax(axis=1).numpy() == labels[start:start + batch_size]).sum())
    model.train()
    return correct / len(labels)


def train_run(name, batch_norm, lr, init, train_arrays, test_arrays, args):
    """One run: a loss per step, and (step, test accuracy) pairs."""
    mg.manual_seed(args.seed)
    model = models.build(name, batch_norm=batch_norm, init=SETUPS[name][2][init])
    optimizer = mg.optim.Adam(model.parameters(), lr=lr)
    loader = mg.data.DataLoader(mg.data.TensorDataset(*train_arrays), models.DEFAULTS[name]["batch_size"],
                                shuffle=True, drop_last=True, seed=args.seed)
    losses, evaluations, step = [], [(0, accuracy(model, *test_arrays))], 0
    while step < args.steps:
        for images, labels in loader:
            loss = F.cross_entropy(model(mg.tensor(images)), mg.tensor(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            if step % args.eval_every == 0 or step == args.steps:
                evaluations.append((step, accuracy(model, *test_arrays)))
            if step == args.steps or not math.isfinite(losses[-1]):
                break
        if not math.isfinite(losses[-1]):
            break
    return losses, evaluations


def summarise(name, batch_norm, lr, init, losses, evaluations, seconds):
    target, classes = SETUPS[name][1], 10
    reached = next((step for step, acc in evaluations if acc >= target), None)
    final = evaluations[-1][1]
    # diverged: the loss became NaN/infinite or ended well above where it started
    diverged = (not all(math.isfinite(loss) for loss in losses)
                or np.mean(losses[-20:]) > 1.5 * np.mean(losses[:10]))
    return {"model": name, "batch_norm": batch_norm, "lr": lr, "init": init, "target": target,
            "steps_to_target": reached, "final_test_accuracy": final, "diverged": bool(diverged),
            "at_chance": final < 1.5 / classes,
            "final_train_loss": float(np.mean(losses[-20:])), "seconds": seconds,
            "losses": losses, "evaluations": evaluations}


def plot(name, runs, lrs, inits, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2 * len(inits), len(lrs), figsize=(4 * len(lrs), 3.2 * 2 * len(inits)),
                                squeeze=False, sharex=True)
    for row, init in enumerate(inits):
        for column, lr in enumerate(lrs):
            accuracy_axes, loss_axes = axes[2 * row, column], axes[2 * row + 1, column]
            for run in runs:
                if run["init"] != init or run["lr"] != lr:
                    continue
                label = "with BN" if run["batch_norm"] else "without BN"
                colour = "tab:blue" if run["batch_norm"] else "tab:red"
                steps, accuracies = zip(*run["evaluations"])
                accuracy_axes.plot(steps, accuracies, marker="o", markersize=3, color=colour, label=label)
                losses = np.array(run["losses"], dtype=float)
                smooth = np.convolve(np.nan_to_num(losses, nan=10.0, posinf=10.0), np.ones(10) / 10, mode="valid")
                loss_axes.plot(np.arange(len(smooth)) + 10, np.minimum(smooth, 5), color=colour, label=label)
            accuracy_axes.set_title(f"lr {lr:g}, init {init}")
            accuracy_axes.set_ylabel("test accuracy")
            accuracy_axes.set_ylim(0, 1)
            loss_axes.set_ylabel("train loss (10-step mean)")
            loss_axes.set_xlabel("step")
            for ax in (accuracy_axes, loss_axes):
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
    figure.suptitle(f"{name}: with and without BatchNorm")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def table(results):
    lines = ["| model | init | lr | BN | steps to target | final test accuracy | diverged | at chance |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        reached = "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"])
        lines.append(f"| {r['model']} | {r['init']} | {r['lr']:g} | {'yes' if r['batch_norm'] else 'no'} | "
                     f"{reached} (target {r['target']:.0%}) | {r['final_test_accuracy']:.4f} | "
                     f"{'yes' if r['diverged'] else 'no'} | {'yes' if r['at_chance'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise cli.DataError(f"--data-dir {args.data_dir}: "
                            f"{'not a folder' if os.path.exists(args.data_dir) else 'no such folder'}")
    training.check_writable(args.out)
    mg.fast.cpu.reuse_host_memory()
    # every model's data now, so that a missing data set is found before the first run, not hours later
    data = {name: (load(name, "train", args, args.limit), load(name, "test", args, args.test_limit))
            for name in args.models}
    results = []
    for name in args.models:
        train_arrays, test_arrays = data.pop(name)
        runs = []
        for init in args.inits:
            for lr in args.lrs:
                for batch_norm in (True, False):
                    start = time.perf_counter()
                    losses, evaluations = train_run(name, batch_norm, lr, init, train_arrays, test_arrays, args)
                    run = summarise(name, batch_norm, lr, init, losses, evaluations, time.perf_counter() - start)
                    runs.append(run)
                    print(f"{name} init {init} lr {lr:g} BN {'yes' if batch_norm else 'no '}: "
                          f"final test accuracy {run['final_test_accuracy']:.4f}, steps to "
                          f"{run['target']:.0%}: {run['steps_to_target']}, diverged: {run['diverged']} "
                          f"({run['seconds']:.0f} s)", flush=True)
        plot(name, runs, args.lrs, args.inits, os.path.join(args.out, f"{name}.png"))
        results.extend(runs)
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump({"args": {key: value for key, value in vars(args).items() if key != "debug"},
                   "runs": results}, file)
    with open(os.path.join(args.out, "results.md"), "w") as file:
        file.write(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
