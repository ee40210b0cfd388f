"""Train a seed network: ``python scripts/train.py MODEL`` trains it with its seed's own settings.

    python scripts/train.py mnist_bn                      # seed 004: Adam 5e-4, batch 64, 5 epochs
    python scripts/train.py mnist_bn --recipe better      # + standardised input, shifts, cosine lr, 10 epochs
    python scripts/train.py mnist_bn --dataset fashion-mnist
    python scripts/train.py catsdogs_wide --data-dir ../shared/data/dogs-vs-cats/smallData --image-size 64
    python scripts/train.py mnist_bn --out runs/a --epochs 8 --resume   # continue runs/a to 8 epochs
    mpiexec -n 2 python scripts/train.py mnist_bn         # data parallel over 2 processes

Without MNIST on the machine, mnist_bn trains on the 10,000-image sample
that ships with minigrad and says so; ``--download`` fetches the full set.
Each epoch shows a progress bar, then evaluates on the test split in eval
mode and writes into ``--out``: ``metrics.json``, ``checkpoint.npz``
(replaced atomically) and ``curves.png``. Ctrl-C keeps the checkpoint of
the last finished epoch; ``--resume`` continues from it and ends with the
same weights, bit for bit, as a run that never stopped.

Under ``mpiexec -n N`` each process trains on 1/N of every epoch with
``--batch-size`` images per step (per process: the global batch is N times
it); gradients are averaged and BatchNorm uses all N processes' batches
(``--bn-per-rank`` keeps each process's own). Process 0 alone prints and writes.
"""
import datetime
import functools
import json
import os
import sys

import minigrad as mg
import minigrad.distributed as dist
import models
from models import cli, datasets, training


def parser():
    p = cli.Parser(prog="train.py", description=__doc__.split("\n")[0],
                   epilog="With --resume, only " + "; ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                            training.RESUME_MAY_CHANGE.items())
                   + ". Any other option given with --resume must equal the run's, or it is refused.")
    p.add_argument("model", choices=sorted(models.MODELS))
    p.add_argument("--data-dir", help="where the data set's files are (default: $MINIGRAD_DATA/<name>, "
                                      "then ~/.cache/minigrad/<name>)")
    p.add_argument("--download", action="store_true", help="fetch MNIST, Fashion-MNIST or CIFAR-10 if not found")
    p.add_argument("--dataset", choices=datasets.NAMES, help="another data set for the model, e.g. fashion-mnist")
    p.add_argument("--epochs", type=cli.positive_int, help="the number of epochs (the seed's by default)")
    p.add_argument("--batch-size", type=cli.positive_int, help="images per step, per process under mpiexec")
    p.add_argument("--lr", type=cli.positive_float, help="Adam's learning rate (the seed's by default)")
    p.add_argument("--device", type=cli.device, help="cpu (the default), cuda or cuda:N")
    p.add_argument("--seed", type=cli.nonnegative_int, default=None, help="random seed (default 0)")
    p.add_argument("--out", help="output folder (default runs/MODEL-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--limit", type=cli.positive_int, help="train on the first N training images only")
    p.add_argument("--test-limit", type=cli.positive_int, help="evaluate on the first N test images only")
    p.add_argument("--no-bn", action="store_true", default=None, help="build the model without BatchNorm")
    p.add_argument("--bn-per-rank", action="store_true", default=None,
                   help="under mpiexec: BatchNorm statistics of each process's own batch, not all processes'")
    p.add_argument("--image-size", type=cli.positive_int, help="Dogs vs. Cats: resize images to S x S (seed: 224)")
    p.add_argument("--init", help="weight initialisation: the model's default, or 'pytorch'")
    p.add_argument("--recipe", choices=["seed", "better"],
                   help="'better': " + ", ".join(f"{k}={v}" for k, v in training.BETTER.items()))
    p.add_argument("--standardize", action="store_true", default=None,
                   help="scale inputs to zero mean, unit variance")
    p.add_argument("--augment", choices=["none", "shift", "flip", "shift+flip"],
                   help="'shift': random shifts of up to 2 pixels; 'flip': mirror half the images left to right")
    p.add_argument("--schedule", choices=["constant", "cosine"], help="learning rate over the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch still)")
    return p


def given_options(args):
    """The options the command line set (argparse fills the others with None)."""
    return {key for key, value in vars(args).items() if value is not None and value is not False}


def check_options(args):
    """What argparse cannot see alone: options that do not fit the model or each other."""
    defaults = models.DEFAULTS[args.model]
    if args.image_size is not None and "image_size" not in defaults:
        raise cli.UsageError(f"--image-size is for the Dogs vs. Cats models; {args.model} takes "
                             f"{args.dataset or defaults['dataset']} images at their own size")
    if args.init is not None:
        choices = models.init_choices(args.model)
        if not choices:
            raise cli.UsageError(f"--init: {args.model} has one initialisation only (PyTorch's defaults)")
        if args.init not in choices:
            raise cli.UsageError(f"--init {args.init!r}: {args.model} takes one of {', '.join(choices)}")
    if args.download and (args.dataset or defaults["dataset"]) not in datasets.DOWNLOADABLE:
        raise cli.UsageError(f"--download: minigrad cannot fetch {args.dataset or defaults['dataset']} (only "
                             f"{', '.join(datasets.DOWNLOADABLE)}); get its files by hand and pass --data-dir")
    if args.resume and not args.out:
        raise cli.UsageError("--resume needs --out, the folder of the run to continue")


def main(argv):
    args = parser().parse_args(argv)
    given = given_options(args)
    check_options(args)
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    checkpoint_path = os.path.join(args.out, training.CHECKPOINT)
    checkpoint = None
    if args.resume:
        if not os.path.exists(checkpoint_path):
            raise cli.DataError(f"--resume: no checkpoint at {checkpoint_path} (nothing to continue)")
        checkpoint = training.read_checkpoint(checkpoint_path, "--resume:")
        args = training.resume_args(json.loads(checkpoint["args"]), args, given)
    else:
        training.fill_defaults(args)
        if os.path.exists(checkpoint_path):
            raise cli.UsageError(f"{checkpoint_path} exists; pass --resume to continue that run, or another --out")
    if dist._launcher_world_size()[0]:
        dist.init_process_group()
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        training.check_writable(args.out)
    training.check_device(args.device)
    mg.fast.cpu.reuse_host_memory()  # each step's big temporaries stay in the heap for the next
    trainer = training.Trainer(args, resuming=checkpoint is not None)
    train_set, test_set = trainer.train_set, trainer.test_set
    if checkpoint is not None:
        trainer.load(checkpoint, checkpoint_path)
    say = functools.partial(print, flush=True) if rank == 0 else (lambda *a, **k: None)
    if args.sample:
        say("MNIST not found, so training on the sample bundled with minigrad (10,000 training and 2,000 test "
            "images); for the full set: --download, or --data-dir DIR")
    if checkpoint is not None:
        say(f"resuming {args.model} from epoch {trainer.epoch} in {args.out}")
    if rank == 0:
        models.summary(trainer.model, train_set.arrays[0].shape[1:])
    processes = f", {trainer.world} processes" if trainer.world > 1 else ""
    say(f"{args.model} on {args.dataset}: {len(train_set)} training and {len(test_set)} test images, "
        f"batch {args.batch_size}{' per process' if processes else ''}, Adam lr {args.lr}, {args.epochs} epochs, "
        f"device {args.device}{processes}, output {args.out}")
    resume = f"python scripts/train.py {args.model} --out {args.out} --resume"
    return training.fit(trainer, resume, say)


if __name__ == "__main__":
    sys.exit(cli.run(main))
