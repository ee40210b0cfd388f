"""The training application: one run of a seed network, its checkpoints, and resuming it.

``scripts/train.py`` is its command line; ``evaluate.py`` and ``predict.py``
read the checkpoints it writes. A run is a ``Trainer`` (model, optimizer,
loader, transforms, random generators, metrics) driven by ``fit``:

    for each epoch: train on every batch, evaluate on the test split in eval
    mode, write checkpoint.npz (atomically), metrics.json and curves.png.

Everything random is saved in the checkpoint, so a resumed run ends with
the same weights, bit for bit, as one that never stopped. Under ``mpiexec -n
N`` each rank trains on its shard of every epoch (``DistributedSampler``),
the gradients are averaged (``DistributedDataParallel``) and BatchNorm's
statistics are taken over all ranks (``SyncBatchNorm``, unless
``bn_per_rank``); rank 0 alone evaluates, prints and writes.
"""
import json
import os
import sys
import time
import uuid

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import transforms

from . import build, datasets, DEFAULTS
from .cli import DataError, UsageError, user_files

CHECKPOINT, METRICS, CURVES = "checkpoint.npz", "metrics.json", "curves.png"
# What --recipe better changes, on top of the seed's settings (measured in docs/results.md).
BETTER = {"standardize": True, "augment": "shift", "schedule": "cosine", "epochs": 10, "lr": 1e-3}
# The options a resumed run may change. Every other option, given with --resume, must equal the run's.
RESUME_MAY_CHANGE = {
    "epochs": "continues to the new total (a cosine schedule is stretched over it)",
    "device": "continues on that device (bit for bit on the same kind of device)",
    "data_dir": "reads the run's data from its new place (it must hold the same images)",
    "test_limit": "evaluates the following epochs on that many test images",
}
# Options that are not part of the run, so never saved.
NOT_SAVED = ("resume", "quiet", "debug", "download")


def fill_defaults(args):
    """Fill what the command line left out: the recipe's choices, then the seed's defaults."""
    defaults = DEFAULTS[args.model]
    recipe = BETTER if args.recipe == "better" else {}
    for key, value in recipe.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("epochs", "batch_size", "lr", "dataset"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.image_size is None and "image_size" in defaults:
        args.image_size = defaults["image_size"]
    args.recipe = args.recipe or "seed"
    args.augment = args.augment or "none"
    args.schedule = args.schedule or "constant"
    args.device = args.device or "cpu"
    args.seed = 0 if args.seed is None else args.seed
    for flag in ("standardize", "no_bn", "bn_per_rank", "sample"):
        setattr(args, flag, bool(getattr(args, flag, False)))
    return args


def resume_args(saved, args, given):
    """The run's own options, with what ``--resume`` may change applied; refuse the rest.

    ``saved``: the options the run was started with; ``args``: this command
    line; ``given``: the names of the options it gave.
    """
    if args.model != saved["model"]:
        raise UsageError(f"--resume: {args.out} holds a run of {saved['model']}, not {args.model}; "
                         f"resume it with: train.py {saved['model']} --out {args.out} --resume")
    changed = [name for name in sorted(given - set(RESUME_MAY_CHANGE) - set(NOT_SAVED) - {"model", "out"})
               if getattr(args, name) != saved.get(name)]
    if changed:
        listed = ", ".join(f"--{name.replace('_', '-')} {getattr(args, name)} (the run has "
                           f"{saved.get(name)})" for name in changed)
        raise UsageError(f"--resume: these options would change the run, so they are refused: {listed}. "
                         f"A resumed run may change only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)}; "
                         "start a new run (another --out) to change the others")
    resumed = fill_defaults(type(args)(**{**saved, "out": args.out}))
    for name in given & set(RESUME_MAY_CHANGE):
        setattr(resumed, name, getattr(args, name))
    for name in NOT_SAVED:
        setattr(resumed, name, getattr(args, name))
    return resumed


def saved_args(args):
    return {key: value for key, value in vars(args).items() if key not in NOT_SAVED}


def check_writable(out):
    """Make ``out`` and prove a file can be written in it, before any work is done."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test-{uuid.uuid4().hex}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise DataError(f"cannot write the run's outputs into --out {out}: {error.strerror or error}") from error


def load_data(args, resuming=False):
    """The train and test splits the run uses; data problems found now, before the first epoch.

    A new MNIST run falls back on the bundled sample when no MNIST is found;
    a resumed run uses what it used (the sample, or real files).
    """
    sample = True if args.sample else (False if resuming else None)
    with user_files(f"loading the {args.dataset} training data"):
        train_set = datasets.load(args.dataset, "train", args.data_dir, args.image_size,
                                  download=getattr(args, "download", False), sample=sample)
    args.sample = bool(getattr(train_set, "is_sample", False))
    with user_files(f"loading the {args.dataset} test data"):
        test_set = datasets.load(args.dataset, "test", args.data_dir, args.image_size,
                                 download=getattr(args, "download", False), sample=args.sample)
    train_set, test_set = limited(train_set, args.limit), limited(test_set, args.test_limit)
    for split, dataset in (("training", train_set), ("test", test_set)):
        if len(dataset) == 0:
            raise DataError(f"the {args.dataset} {split} split is empty ({args.data_dir or 'default place'})")
    if list(train_set.classes) != list(test_set.classes):
        raise DataError(f"the training and test splits of {args.dataset} have different classes: "
                        f"{list(train_set.classes)} and {list(test_set.classes)} (a class folder missing "
                        "or misnamed?); the labels would not mean the same in both")
    return train_set, test_set


def limited(dataset, limit):
    """The first ``limit`` items of a dataset (all when ``limit`` is None), keeping its ``classes``."""
    if not limit or limit >= len(dataset):
        return dataset
    subset = mg.data.TensorDataset(*[a[:limit] for a in dataset.arrays])
    subset.classes = dataset.classes
    subset.is_sample = getattr(dataset, "is_sample", False)
    return subset


def build_model(args):
    options = {"batch_norm": not args.no_bn}
    if args.image_size and "image_size" in DEFAULTS[args.model]:
        options["image_size"] = args.image_size
    if args.init:
        options["init"] = args.init
    try:
        return build(args.model, **options)
    except ValueError as error:  # e.g. an --image-size too small for the network's pooling
        raise UsageError(f"cannot build {args.model} with these options: {error}") from error


def check_device(device):
    """Fail now, with the reason, if the device cannot be used (no CuPy, no GPU, no such GPU)."""
    try:
        mg.zeros((), device=device).numpy()
    except (RuntimeError, ImportError, ValueError) as error:
        raise DataError(f"--device {device}: {error}") from error


class Trainer:
    """The state of one run: model, optimizer, loaders, random generators and the metrics so far."""

    def __init__(self, args, resuming=False):
        """Build the model (a bad option fails here, in a second), then load the data (which may take long)."""
        self.args = args
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        # under mpiexec, "cuda" means each rank's own GPU on its machine (PyTorch's LOCAL_RANK)
        self.device = f"cuda:{dist.get_local_rank()}" if self.world > 1 and args.device == "cuda" else args.device
        mg.manual_seed(args.seed)
        self.model = build_model(args).to(self.device)
        self.train_set, self.test_set = train_set, test_set = load_data(args, resuming)
        self.network = self.model  # what the batches go through: the model, or its DDP wrapper
        if self.world > 1:
            if not args.bn_per_rank:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.network = nn.parallel.DistributedDataParallel(self.model)
            mg.manual_seed(args.seed + 1_000_003 * self.rank)  # each rank its own dropout masks
        self.epoch, self.metrics = 0, []
        self.optimizer = mg.optim.Adam(self.model.parameters(), lr=args.lr)
        self.sampler = None
        if self.world > 1:  # each rank its share of each epoch; drop_last: every rank the same number of steps
            self.sampler = mg.data.DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
            self.loader = mg.data.DataLoader(train_set, args.batch_size, sampler=self.sampler)
        else:
            self.loader = mg.data.DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed)
        # rank 0 keeps the one-process generator, so a one-rank run is exactly the plain run
        self.augment_rng = np.random.default_rng(args.seed + 1 if self.rank == 0 else (args.seed + 1, self.rank))
        self.schedule = None
        if args.schedule == "cosine":  # stepped once per batch, so over the whole run: T_max counts steps
            self.schedule = mg.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=args.epochs * len(self.loader))
        self.normalize = transforms.Normalize.fit(train_set.arrays[0]) if args.standardize else None
        self.augment = transforms.Compose(
            ([transforms.RandomCrop(padding=2, generator=self.augment_rng)] if "shift" in args.augment else [])
            + ([transforms.RandomHorizontalFlip(generator=self.augment_rng)] if "flip" in args.augment else []))

    def prepare(self, images, training):
        return model_input(self.augment(images) if training else images, self.normalize, self.device)

    def train_epoch(self, progress):
        self.network.train()
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        step = self.epoch * len(self.loader)
        # The sums stay on the device and are read only for the progress bar and at the end:
        # reading a GPU value makes the host wait for the GPU, which would then idle each step.
        loss_sum = correct = mg.zeros((), dtype=mg.float64, device=self.device)
        seen, start = 0, time.perf_counter()
        bar = progress(self.loader, desc=f"epoch {self.epoch + 1}/{self.args.epochs}")
        for images, labels in bar:
            x, y = self.prepare(images, training=True), mg.tensor(labels, device=self.device)
            logits = self.network(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
            step += 1
            with mg.no_grad():
                loss_sum = loss_sum + loss.detach().double() * len(labels)
                correct = correct + (logits.argmax(axis=1) == y).sum()
            seen += len(labels)
            if hasattr(bar, "set_postfix") and (step % 10 == 0 or seen == len(self.loader.dataset)):
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}",
                                img_s=f"{self.world * seen / (time.perf_counter() - start):.0f}")
        totals = np.array([loss_sum.item(), correct.item(), seen], dtype=np.float64)
        if self.world > 1:  # the whole epoch's figures: every rank's sums
            totals_tensor = mg.tensor(totals)
            dist.all_reduce(totals_tensor)
            totals = totals_tensor.numpy()
        seconds = time.perf_counter() - start
        loss_sum, correct, seen = totals
        return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen, "seconds": seconds,
                "images_per_second": seen / seconds}

    def evaluate(self, dataset=None):
        """Loss, accuracy and logits on the test split (or ``dataset``), in eval mode and without a graph.

        Batches of 4 training batches: no graph is kept, so that costs about
        the memory of a training step. Accuracy is NaN if any logit is NaN.
        """
        return evaluate(self.model, dataset or self.test_set, self.prepare, 4 * self.args.batch_size,
                        self.device)

    def state(self):
        random = random_state(self)
        if self.world > 1:  # every rank's generators: each draws its own dropout masks and shifts
            states = [None] * self.world
            dist.all_gather_object(states, random)
            random = {"ranks": states}
        return {"format": "minigrad-train", "model_name": self.args.model, "epoch": self.epoch,
                "args": json.dumps(saved_args(self.args)), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "metrics": json.dumps(self.metrics),
                "mean": np.asarray(self.normalize.mean if self.normalize else 0.0, np.float32),
                "std": np.asarray(self.normalize.std if self.normalize else 1.0, np.float32),
                "classes": list(self.test_set.classes), "random": json.dumps(random),
                "train_size": len(self.train_set), "world_size": self.world,
                "input_shape": list(self.train_set.arrays[0].shape[1:])}

    def load(self, checkpoint, path):
        if int(checkpoint.get("world_size", 1)) != self.world:
            raise UsageError(f"--resume: {path} was written by a run of {checkpoint.get('world_size', 1)} "
                             f"rank(s), this one has {self.world}; resume it with as many")
        if "train_size" in checkpoint and int(checkpoint["train_size"]) != len(self.train_set):
            raise DataError(f"--resume: the run trained on {int(checkpoint['train_size'])} images, but the "
                            f"data found now has {len(self.train_set)}; point --data-dir at the run's data")
        with user_files(f"--resume: reading {path}"):
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.epoch, self.metrics = int(checkpoint["epoch"]), json.loads(checkpoint["metrics"])
            random = json.loads(checkpoint["random"])
            set_random_state(self, random["ranks"][self.rank] if "ranks" in random else random)
        if self.schedule is not None:  # to the steps done; its T_max is this run's (--epochs may have grown)
            self.schedule.last_epoch = self.epoch * len(self.loader) - 1
            self.schedule.step()


def model_input(images, normalize, device):
    """A batch of images (NumPy) as the model's input: standardised if ``normalize``, float32, on ``device``."""
    if normalize is not None:
        images = normalize(images)
    return mg.tensor(images.astype(np.float32, copy=False), device=device)


def evaluate(model, dataset, prepare, batch_size, device):
    """(mean loss, accuracy, logits as a NumPy array) of ``model`` on ``dataset``, in eval mode."""
    model.eval()
    loss_sum, outputs = 0.0, []
    with mg.no_grad():
        for images, labels in mg.data.DataLoader(dataset, batch_size):
            logits = model(prepare(images, training=False))
            loss_sum += F.cross_entropy(logits, mg.tensor(labels, device=device), reduction="sum").item()
            outputs.append(logits.numpy())
    logits = np.concatenate(outputs)
    labels = dataset.arrays[1]
    if np.isnan(logits).any():
        return float("nan"), float("nan"), logits
    return loss_sum / len(labels), float((logits.argmax(axis=1) == labels).mean()), logits


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


def read_checkpoint(path, option="checkpoint"):
    """The checkpoint of a training run at ``path``; a DataError naming the problem if it is not one."""
    with user_files(f"{option} {path}"):
        checkpoint = mg.load(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "minigrad-train":
        raise DataError(f"{option} {path}: not a checkpoint written by scripts/train.py")
    return checkpoint


def write_outputs(trainer):
    """checkpoint.npz, metrics.json and curves.png, each replaced atomically (a crash keeps the last one)."""
    out = trainer.args.out
    state = trainer.state()  # a collective under mpiexec: every rank takes part
    if trainer.rank != 0:
        return
    with user_files("writing the checkpoint"):
        mg.save(state, os.path.join(out, CHECKPOINT))
        report = {"model": trainer.args.model, "args": saved_args(trainer.args), "epochs": trainer.metrics}
        if trainer.metrics:
            report["test_accuracy"] = trainer.metrics[-1]["test_accuracy"]
        temporary = os.path.join(out, f"{METRICS}.{uuid.uuid4().hex}.tmp")
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
    temporary = f"{path}.{uuid.uuid4().hex}.png"
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)


def progress_bar(quiet):
    """A tqdm bar on stderr, or the iterable itself when quiet or without tqdm."""
    if not quiet:
        try:
            from tqdm import tqdm
            return lambda iterable, desc: tqdm(iterable, desc=desc, unit="batch", dynamic_ncols=True)
        except ImportError:
            pass
    return lambda iterable, desc: iterable


def fit(trainer, resume_command, say=print):
    """Train to ``args.epochs``, evaluating and writing the outputs after every epoch; the exit status."""
    args = trainer.args
    progress = progress_bar(args.quiet or trainer.rank != 0)
    checkpoint = os.path.join(args.out, CHECKPOINT)
    try:
        while trainer.epoch < args.epochs:
            row = trainer.train_epoch(progress)
            if trainer.rank == 0:
                row["test_loss"], row["test_accuracy"], _ = trainer.evaluate()
            trainer.epoch += 1
            row["epoch"] = trainer.epoch
            trainer.metrics.append(row)
            write_outputs(trainer)
            if trainer.world > 1:
                dist.barrier()
            if trainer.rank == 0:
                nan = " (the model outputs NaN)" if row["test_accuracy"] != row["test_accuracy"] else ""
                say(f"epoch {trainer.epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
                    f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}{nan} | "
                    f"{row['seconds']:.1f} s, {row['images_per_second']:.0f} images/s")
    except KeyboardInterrupt:
        if trainer.rank == 0:
            if os.path.exists(checkpoint):
                saved = int(read_checkpoint(checkpoint)["epoch"])
                print(f"\ninterrupted: {checkpoint} holds epoch {saved}; continue with: {resume_command}",
                      file=sys.stderr, flush=True)
            else:
                print(f"\ninterrupted in epoch {trainer.epoch + 1}, before any epoch finished: nothing was "
                      "saved, so there is nothing to resume", file=sys.stderr, flush=True)
        return 130
    if trainer.rank == 0 and trainer.metrics:
        say(f"test accuracy {trainer.metrics[-1]['test_accuracy']:.4f} after {trainer.epoch} epochs; "
            f"outputs in {args.out}")
    return 0
