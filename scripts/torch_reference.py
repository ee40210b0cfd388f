"""Train a seed network's PyTorch twin exactly as scripts/train.py trains minigrad's, to compare results.

    python scripts/torch_reference.py mnist_bn --data-dir ../shared/data/mnist --seed 1

It takes train.py's options and reuses its Trainer for the data, the
initial weights (copied into the twin), the batch order, the augmentation and
the learning-rate schedule, so the two runs differ only in their dropout masks
and in floating-point rounding. One run of each tells little when the test
accuracy moves by half a point from epoch to epoch; run a few seeds of both.
PyTorch is the oracle here, not a dependency: this script needs it installed.
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train  # noqa: E402
from benchmark import to_torch  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def main(argv=None):
    if torch is None:
        raise SystemExit("torch_reference.py needs PyTorch: pip install torch")
    args = train.parse_args(argv)
    trainer = train.Trainer(args)
    torch.manual_seed(args.seed)
    twin = to_torch(trainer.model)
    twin.load_state_dict({key: torch.tensor(value.numpy()) for key, value in trainer.model.state_dict().items()})
    optimizer = torch.optim.Adam(twin.parameters(), lr=args.lr)
    total = args.epochs * len(trainer.loader)
    metrics, step = [], 0
    for epoch in range(1, args.epochs + 1):
        twin.train()
        start = time.perf_counter()
        for images, labels in trainer.loader:
            for group in optimizer.param_groups:
                group["lr"] = trainer.learning_rate(step, total)
            x = torch.from_numpy(trainer.prepare(images, training=True).numpy())
            loss = torch.nn.functional.cross_entropy(twin(x), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        seconds = time.perf_counter() - start
        twin.eval()
        predictions = []
        with torch.no_grad():
            for images, _ in train.mg.data.DataLoader(trainer.test_set, 4 * args.batch_size):
                x = torch.from_numpy(trainer.prepare(images, training=False).numpy())
                predictions.append(twin(x).argmax(dim=1).numpy())
        accuracy = float((np.concatenate(predictions) == trainer.test_set.arrays[1]).mean())
        metrics.append({"epoch": epoch, "test_accuracy": accuracy, "seconds": seconds})
        print(f"epoch {epoch}: PyTorch {torch.__version__} test accuracy {accuracy:.4f} ({seconds:.1f} s)", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torch_metrics.json"), "w") as f:
        json.dump({"args": train.public_args(args), "epochs": metrics,
                   "test_accuracy": metrics[-1]["test_accuracy"] if metrics else None}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
