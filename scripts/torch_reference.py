"""Train a seed network's PyTorch twin exactly as scripts/train.py trains minigrad's, to compare results.

    python scripts/torch_reference.py mnist_bn --data-dir ../shared/data/mnist --seed 1 --out runs/mnist-seed1

It takes train.py's options and reuses its Trainer (models/training.py) for
the data, the initial weights (copied into the twin, models/torch_twin.py),
the batch order, the augmentation and the learning-rate schedule, so the two
runs differ only in their dropout masks and in floating-point rounding. One
run of each tells little when the test accuracy moves by half a point from
epoch to epoch; run a few seeds of both.
PyTorch is the oracle here, not a dependency: this script needs it installed.
"""
import datetime
import importlib.util
import json
import os
import sys
import time

import numpy as np

import minigrad as mg
from models import cli, torch_twin, training


def train_script():
    """scripts/train.py as a module, for its command line (scripts are files, not a package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
    spec = importlib.util.spec_from_file_location("torch_reference_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_torch():
    """PyTorch, imported once the command line is known to be good (it takes a second or two)."""
    try:
        import torch
    except ImportError as error:
        raise cli.DataError(f"PyTorch is not installed ({error}), and it is the reference this script "
                            "trains: pip install torch (the CPU build will do)") from error
    return torch


def main(argv=None):
    train = train_script()
    parser = train.parser()
    parser.prog, parser.description = "torch_reference.py", __doc__.split("\n")[0]
    parser.epilog = "It takes train.py's options, but not --resume: it always trains from the start."
    args = parser.parse_args(argv)
    if args.resume:
        raise cli.UsageError("--resume: torch_reference.py always trains from the start (it keeps no checkpoint)")
    train.check_options(args)
    torch = import_torch()
    if args.out is None:  # train.py's default; pass the --out of the train.py run to compare with
        args.out = os.path.join("runs", f"{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    training.fill_defaults(args)
    training.check_writable(args.out)
    training.check_device(args.device)
    trainer = training.Trainer(args)
    torch.manual_seed(args.seed)
    twin = torch_twin.twin(trainer.model)
    optimizer = torch.optim.Adam(twin.parameters(), lr=args.lr)
    schedule = None
    if args.schedule == "cosine":  # the run's schedule, stepped per batch as train.py steps it
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(trainer.loader))
    metrics = []
    for epoch in range(1, args.epochs + 1):
        twin.train()
        start = time.perf_counter()
        for images, labels in trainer.loader:
            x = torch.from_numpy(trainer.prepare(images, training=True).numpy())
            loss = torch.nn.functional.cross_entropy(twin(x), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        seconds = time.perf_counter() - start
        twin.eval()
        predictions = []
        with torch.no_grad():
            for images, _ in mg.data.DataLoader(trainer.test_set, 4 * args.batch_size):
                x = torch.from_numpy(trainer.prepare(images, training=False).numpy())
                predictions.append(twin(x).argmax(dim=1).numpy())
        accuracy = float((np.concatenate(predictions) == trainer.test_set.arrays[1]).mean())
        metrics.append({"epoch": epoch, "test_accuracy": accuracy, "seconds": seconds})
        print(f"epoch {epoch}: PyTorch {torch.__version__} test accuracy {accuracy:.4f} ({seconds:.1f} s)", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torch_metrics.json"), "w") as f:
        json.dump({"args": training.saved_args(args), "epochs": metrics,
                   "test_accuracy": metrics[-1]["test_accuracy"] if metrics else None}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
