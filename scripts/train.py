"""Train a seed network: ``python scripts/train.py MODEL`` trains it with its seed's own settings.

    python scripts/train.py mnist_bn                      # seed 004: Adam 5e-4, batch 64, 5 epochs
    python scripts/train.py mnist_bn --recipe better      # + standardised input, shifts, cosine lr, 10 epochs
    python scripts/train.py mnist_bn --dataset fashion-mnist
    python scripts/train.py catsdogs_wide --data-dir ../shared/data/dogs-vs-cats/smallData --image-size 64
    python scripts/train.py mnist_bn --out runs/a --epochs 5 --resume   # continue runs/a

Each epoch shows a progress bar (loss, accuracy, images/s), then evaluates
on the test split in eval mode (BatchNorm's running averages, no dropout),
and writes into ``--out`` (default ``runs/MODEL-<timestamp>``):
``metrics.json`` (per epoch: train and test loss and accuracy, seconds,
images/s; and the final ``test_accuracy``), ``checkpoint.npz`` (model,
optimizer, epoch, random states; replaced atomically after every epoch) and
``curves.png``. Ctrl-C stops at once and keeps the checkpoint of the last
finished epoch; ``--resume`` continues from it, on the run's device unless
``--device`` says otherwise, and a resumed run ends with the same weights,
bit for bit, as one that was never stopped (on the CPU, and on one GPU).
"""
import argparse
import datetime
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minigrad as mg  # noqa: E402  (before NumPy: it sets OpenBLAS's thread timeout, see minigrad/backend.py)
import numpy as np  # noqa: E402

import minigrad.nn.functional as F  # noqa: E402
import models  # noqa: E402
from models import datasets  # noqa: E402

CHECKPOINT, METRICS, CURVES = "checkpoint.npz", "metrics.json", "curves.png"
# What --recipe better changes, on top of the seed's settings (measured in the README).
BETTER = {"standardize": True, "augment": "shift", "schedule": "cosine", "epochs": 10, "lr": 1e-3}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=sorted(models.MODELS))
    parser.add_argument("--data-dir", help="where the data set's files are (default: $MINIGRAD_DATA/<name>, "
                                           "then ~/.cache/minigrad/<name>)")
    parser.add_argument("--dataset", help="another data set for the model, e.g. fashion-mnist for mnist_bn")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--device", help="cpu (the default), cuda or cuda:N; with --resume, the run's own device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output folder (default runs/MODEL-<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--limit", type=int, help="train on the first N training images only")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    parser.add_argument("--no-bn", action="store_true", help="build the model without BatchNorm")
    parser.add_argument("--image-size", type=int, help="Dogs vs. Cats: resize images to S x S (seed: 224)")
    parser.add_argument("--init", help="weight initialisation: the model's default, or 'pytorch'")
    parser.add_argument("--recipe", choices=["seed", "better"], default="seed",
                        help="'better': " + ", ".join(f"{k}={v}" for k, v in BETTER.items()))
    parser.add_argument("--standardize", action="store_true", help="scale inputs to zero mean, unit variance")
    parser.add_argument("--augment", choices=["none", "shift", "flip", "shift+flip"],
                        help="'shift': random shifts of up to 2 pixels; 'flip': mirror half the images left to right")
    parser.add_argument("--schedule", choices=["constant", "cosine"], help="learning rate over the run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch still)")
    args = parser.parse_args(argv)
    return settle(args)


def settle(args):
    """Fill what the command line left out: the recipe's choices, then the seed's defaults."""
    defaults = models.DEFAULTS[args.model]
    args.epochs_given = args.epochs is not None
    args.device_given = args.device is not None
    args.device = args.device or "cpu"
    recipe = BETTER if args.recipe == "better" else {}
    for key in ("epochs", "lr", "standardize", "augment", "schedule"):
        if getattr(args, key) in (None, False) and key in recipe:
            setattr(args, key, recipe[key])
    args.epochs = args.epochs or defaults["epochs"]
    args.batch_size = args.batch_size or defaults["batch_size"]
    args.lr = args.lr or defaults["lr"]
    args.dataset = args.dataset or defaults["dataset"]
    args.augment = args.augment or "none"
    args.schedule = args.schedule or "constant"
    if "image_size" in defaults:
        args.image_size = args.image_size or defaults["image_size"]
    if args.resume and not args.out:
        raise SystemExit("train.py: --resume needs --out, the folder of the run to continue")
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    return args


def build_model(args):
    options = {"batch_norm": not args.no_bn}
    if args.image_size and "image_size" in models.DEFAULTS[args.model]:
        options["image_size"] = args.image_size
    if args.init:
        options["init"] = args.init
    return models.build(args.model, **options)


def load_split(args, split):
    dataset = datasets.load(args.dataset, split, args.data_dir, args.image_size)
    limit = args.limit if split == "train" else args.test_limit
    if limit:
        arrays = [a[:limit] for a in dataset.arrays]
        dataset, classes = mg.data.TensorDataset(*arrays), dataset.classes
        dataset.classes = classes
    return dataset


def shift(images, rng, pixels=2):
    """Each image moved by its own random offset of up to ``pixels`` rows and columns, zeros filling in."""
    n, c, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)))
    dy, dx = rng.integers(0, 2 * pixels + 1, size=(2, n))
    rows = (dy[:, None] + np.arange(h))[:, None, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


class Trainer:
    """The state of one run: model, optimizer, loaders, random generators and the metrics so far."""

    def __init__(self, args, train=True):
        """``train=False`` loads the test split only (for evaluation); then set ``mean`` and ``std`` yourself."""
        self.args = args
        mg.manual_seed(args.seed)
        self.test_set = load_split(args, "test")
        self.model = build_model(args).to(args.device)
        self.mean, self.std = 0.0, 1.0
        self.epoch, self.metrics = 0, []
        if not train:
            return
        self.train_set = load_split(args, "train")
        self.optimizer = mg.optim.Adam(self.model.parameters(), lr=args.lr)
        self.loader = mg.data.DataLoader(self.train_set, args.batch_size, shuffle=True, seed=args.seed)
        self.augment_rng = np.random.default_rng(args.seed + 1)
        if args.standardize:  # per-channel statistics of the training images
            images = self.train_set.arrays[0]
            axes = (0,) + tuple(range(2, images.ndim))
            self.mean = images.mean(axis=axes, keepdims=True)[0]
            self.std = images.std(axis=axes, keepdims=True)[0]

    def prepare(self, images, training):
        if training and self.args.augment.startswith("shift"):
            images = shift(images, self.augment_rng)
        if training and self.args.augment.endswith("flip"):
            mirrored = self.augment_rng.random(len(images)) < 0.5
            images[mirrored] = images[mirrored, ..., ::-1]
        if self.args.standardize:
            images = (images - self.mean) / self.std
        return mg.tensor(images.astype(np.float32, copy=False), device=self.args.device)

    def learning_rate(self, step, total):
        if self.args.schedule == "cosine":
            return self.args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
        return self.args.lr

    def train_epoch(self, progress):
        self.model.train()
        total_steps, step = self.args.epochs * len(self.loader), self.epoch * len(self.loader)
        # The sums stay on the device and are read only for the progress bar and at the end:
        # reading a GPU value makes the host wait for the GPU, which would then idle each step.
        loss_sum = correct = mg.zeros((), dtype=mg.float64, device=self.args.device)
        seen = 0
        start = time.perf_counter()
        bar = progress(self.loader, desc=f"epoch {self.epoch + 1}/{self.args.epochs}")
        for images, labels in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(step, total_steps)
            x, y = self.prepare(images, training=True), mg.tensor(labels, device=self.args.device)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            step += 1
            with mg.no_grad():
                loss_sum = loss_sum + loss.detach().double() * len(labels)
                correct = correct + (logits.argmax(axis=1) == y).sum()
            seen += len(labels)
            if hasattr(bar, "set_postfix") and (step % 10 == 0 or seen == len(self.train_set)):
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}")
        loss_sum, correct = loss_sum.item(), correct.item()
        seconds = time.perf_counter() - start
        return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen, "seconds": seconds,
                "images_per_second": seen / seconds}

    def evaluate(self):
        """Loss, accuracy and predictions on the test split, in eval mode and without a graph.

        Batches of 4 training batches: no graph is kept, so that costs about
        the memory of a training step (seed 001's wide model at 224 x 224
        needs 80 MB of activations per image).
        """
        batch_size = 4 * self.args.batch_size
        self.model.eval()
        loss_sum, predictions = 0.0, []
        with mg.no_grad():
            for images, labels in mg.data.DataLoader(self.test_set, batch_size):
                logits = self.model(self.prepare(images, training=False))
                y = mg.tensor(labels, device=self.args.device)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                predictions.append(logits.argmax(axis=1).numpy())
        predictions = np.concatenate(predictions)
        labels = self.test_set.arrays[1]
        return loss_sum / len(labels), float((predictions == labels).mean()), predictions

    def state(self):
        return {"format": "minigrad-train", "model_name": self.args.model, "epoch": self.epoch,
                "args": json.dumps(public_args(self.args)), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "metrics": json.dumps(self.metrics),
                "mean": np.asarray(self.mean, np.float32), "std": np.asarray(self.std, np.float32),
                "classes": list(self.test_set.classes), "random": json.dumps(random_state(self))}

    def load(self, checkpoint):
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.epoch, self.metrics = int(checkpoint["epoch"]), json.loads(checkpoint["metrics"])
        set_random_state(self, json.loads(checkpoint["random"]))


def public_args(args):
    return {key: value for key, value in vars(args).items() if key not in ("resume", "quiet", "epochs_given", "device_given")}


def random_state(trainer):
    """Every random source the run draws from, as JSON-friendly dicts (PCG64 states hold 128-bit ints)."""
    return {"minigrad": mg.backend.rng_state(),  # NumPy's and the GPU's generators
            "loader": trainer.loader.state_dict(), "augment": trainer.augment_rng.bit_generator.state}


def set_random_state(trainer, state):
    if "bit_generator" in state["minigrad"]:  # a checkpoint from before the GPU's generator was saved
        mg.backend.generator().bit_generator.state = state["minigrad"]
    else:
        mg.backend.set_rng_state(state["minigrad"])
    trainer.loader.load_state_dict(state["loader"])
    trainer.augment_rng.bit_generator.state = state["augment"]


def read_checkpoint(path):
    checkpoint = mg.load(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "minigrad-train":
        raise ValueError(f"{path}: not a checkpoint written by scripts/train.py")
    return checkpoint


def write_outputs(trainer, test_accuracy=None):
    out = trainer.args.out
    mg.save(trainer.state(), os.path.join(out, CHECKPOINT))
    report = {"model": trainer.args.model, "args": public_args(trainer.args), "epochs": trainer.metrics}
    if trainer.metrics:
        report["test_accuracy"] = trainer.metrics[-1]["test_accuracy"]
    temporary = os.path.join(out, METRICS + ".tmp")
    with open(temporary, "w") as file:
        json.dump(report, file, indent=2)
    os.replace(temporary, os.path.join(out, METRICS))
    plot_curves(trainer.metrics, os.path.join(out, CURVES))


def plot_curves(metrics, path):
    """Loss and accuracy per epoch, train and test, side by side (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [m["epoch"] for m in metrics]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        loss_axes.plot(epochs, [m[f"{split}_loss"] for m in metrics], marker="o", label=split)
        accuracy_axes.plot(epochs, [m[f"{split}_accuracy"] for m in metrics], marker="o", label=split)
    for axes, label in ((loss_axes, "cross-entropy loss"), (accuracy_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def progress_bar(quiet):
    if quiet:
        return lambda iterable, desc: iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda iterable, desc: iterable
    return lambda iterable, desc: tqdm(iterable, desc=desc, unit="batch", dynamic_ncols=True)


def main(argv=None):
    args = parse_args(argv)
    mg.backend.reuse_host_memory()
    checkpoint_path = os.path.join(args.out, CHECKPOINT)
    if args.resume:
        if not os.path.exists(checkpoint_path):
            raise SystemExit(f"train.py: --resume: no checkpoint at {checkpoint_path}")
        checkpoint = read_checkpoint(checkpoint_path)
        saved = json.loads(checkpoint["args"])
        # the run continues as it was started; only the number of epochs may change (which, with
        # --schedule cosine, stretches the remaining schedule over the new length)
        for key, value in saved.items():
            if key != "out" and not (key in ("epochs", "device") and getattr(args, f"{key}_given")):
                setattr(args, key, value)
    elif os.path.exists(checkpoint_path):
        raise SystemExit(f"train.py: {checkpoint_path} exists; pass --resume to continue that run, "
                         "or another --out")
    trainer = Trainer(args)
    if args.resume:
        trainer.load(checkpoint)
        print(f"resuming {args.model} from epoch {trainer.epoch} in {args.out}")
    os.makedirs(args.out, exist_ok=True)
    image_shape = trainer.train_set.arrays[0].shape[1:]
    mg.utils.summary(trainer.model, image_shape)
    print(f"{args.model} on {args.dataset}: {len(trainer.train_set)} training and {len(trainer.test_set)} test "
          f"images, batch {args.batch_size}, Adam lr {args.lr}, {args.epochs} epochs, device {args.device}, "
          f"output {args.out}")
    progress = progress_bar(args.quiet)
    try:
        while trainer.epoch < args.epochs:
            row = trainer.train_epoch(progress)
            row["test_loss"], row["test_accuracy"], _ = trainer.evaluate()
            trainer.epoch += 1
            row["epoch"] = trainer.epoch
            trainer.metrics.append(row)
            write_outputs(trainer)
            print(f"epoch {trainer.epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
                  f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f} | "
                  f"{row['seconds']:.1f} s, {row['images_per_second']:.0f} images/s", flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {checkpoint_path} holds epoch {trainer.epoch}; "
              f"continue with: python scripts/train.py {args.model} --out {args.out} --resume", file=sys.stderr)
        return 130
    if trainer.metrics:
        print(f"test accuracy {trainer.metrics[-1]['test_accuracy']:.4f} after {trainer.epoch} epochs; "
              f"outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
