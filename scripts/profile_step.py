"""Where the time of one training step goes: each node's forward and backward, and the optimizer.

    python scripts/profile_step.py                      # mnist_bn, batch 64
    python scripts/profile_step.py --model cifar_bn --batch-size 64 --steps 20

Every Function subclass's ``forward`` and ``backward`` is wrapped with a
timer for the run, so the table adds up the time spent inside each kind of
node (all Conv2d layers together, for example); "other" is the rest of the
step: Python between nodes, the graph walk, allocating gradients.
"""
import collections
import sys
import time

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.autograd import Function
from models import build, cli

INPUT_SHAPES = {"mnist_bn": (1, 28, 28), "cifar_bn": (3, 32, 32), "mlp_bn": (20,),
                "catsdogs_logreg": (3, 224, 224), "catsdogs_wide": (3, 224, 224), "catsdogs_deep": (3, 224, 224)}


def all_nodes(cls=Function):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_nodes(sub)


def instrument(totals):
    """Wrap every node class's own forward and backward rules to add their seconds to ``totals[(name, phase)]``.

    Both the textbook classes and their fast drop-ins (``minigrad/fast``) are
    wrapped: the array rule ``backward_arrays`` counts as "backward". A rule
    that calls another node's rule (the textbook convolution's backward is made
    of convolutions) is timed once, as a whole.
    """
    running = set()  # the phases of the nodes being timed now, so that nested calls are not counted twice
    for cls in set(all_nodes()):
        for method_name, phase in (("forward", "forward"), ("backward", "backward"),
                                   ("backward_arrays", "backward")):
            method = cls.__dict__.get(method_name)
            if method is None:
                continue

            def timed(self, *args, _method=method, _key=(cls.__name__, phase)):
                if running:
                    return _method(self, *args)
                running.add(_key)
                start = time.perf_counter()
                try:
                    return _method(self, *args)
                finally:
                    totals[_key] += time.perf_counter() - start
                    running.discard(_key)
            setattr(cls, method_name, timed)


def main(argv=None):
    parser = cli.Parser(prog="profile_step.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mnist_bn", choices=sorted(INPUT_SHAPES))
    parser.add_argument("--batch-size", type=cli.positive_int, default=64)
    parser.add_argument("--steps", type=cli.positive_int, default=20, help="timed steps (after 3 untimed)")
    args = parser.parse_args(argv)
    mg.fast.cpu.reuse_host_memory()
    mg.manual_seed(0)
    model = build(args.model)
    optimizer = mg.optim.Adam(model.parameters())
    x = mg.randn(args.batch_size, *INPUT_SHAPES[args.model])
    classes = 2 if args.model.startswith("catsdogs") else 10
    y = mg.tensor(np.random.default_rng(0).integers(0, classes, args.batch_size))
    totals = collections.defaultdict(float)
    instrument(totals)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        start = time.perf_counter()
        optimizer.step()
        totals[("Adam", "step")] += time.perf_counter() - start

    for _ in range(3):
        step()
    totals.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_ms = 1000 * (time.perf_counter() - start) / args.steps
    rows = sorted(((1000 * seconds / args.steps, name, phase) for (name, phase), seconds in totals.items()),
                  reverse=True)
    print(f"{args.model}, batch {args.batch_size}: {step_ms:.1f} ms per step (mean of {args.steps})\n")
    print(f"| node | phase | ms per step | share |\n| --- | --- | --- | --- |")
    for ms, name, phase in rows:
        print(f"| {name} | {phase} | {ms:.2f} | {ms / step_ms:.0%} |")
    other = step_ms - sum(ms for ms, _, _ in rows)
    print(f"| other | | {other:.2f} | {other / step_ms:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
