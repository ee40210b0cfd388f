"""Classify image files with a checkpoint of scripts/train.py: each image's class and its probability.

    python scripts/predict.py runs/mnist_bn/checkpoint.npz digit.png
    python scripts/predict.py runs/cats/checkpoint.npz photo1.jpg photo2.jpg --top 2

Each image is prepared as the run's training images were: converted to their
channels (grayscale for the MNIST models), resized to their size (nearest
neighbour, as image folders are read), scaled to [0, 1] as their loader
scales, and standardised with the training set's statistics kept in the
checkpoint when the run used --standardize. The model runs in eval mode
(BatchNorm's running averages, no dropout). MNIST's digits are white on
black: invert a photo of a dark digit on white paper first.
"""
import sys

import numpy as np

from models import cli, datasets, inference


def main(argv):
    parser = cli.Parser(prog="predict.py", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument("--top", type=cli.positive_int, default=1, help="show the K most likely classes")
    parser.add_argument("--device", type=cli.device, default="cpu")
    args = parser.parse_args(argv)
    checkpoint, run, model = inference.load_run(args.checkpoint, args.device)
    classes = list(checkpoint["classes"])
    if args.top > len(classes):
        raise cli.UsageError(f"--top {args.top}: the model has {len(classes)} classes")
    shape = inference.image_shape(checkpoint, run)
    images = np.empty((len(args.images), *shape), dtype=np.float32)
    for i, path in enumerate(args.images):
        with cli.user_files(f"reading the image {path}"):
            try:
                images[i] = datasets.read_image(path, run.dataset, shape)
            except SyntaxError as error:  # Pillow's word for some damaged files
                raise ValueError(f"cannot read it as an image ({error})") from error
    prepare = inference.preparer(checkpoint, run, args.device)
    for path, best in zip(args.images, inference.classify(model, prepare, images, args.top)):
        ranked = ", ".join(f"{classes[c]} {p:.1%}" for c, p in best)
        print(f"{path}: {ranked}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
