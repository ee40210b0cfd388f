"""What every script's command line shares: option types, user errors, and one way to report them.

A user's mistake (a bad option, a missing or damaged file, an unwritable
folder, Ctrl-C) ends in one paragraph on stderr and exit status 2 (usage) or
1 (data and files), never in a traceback; ``--debug`` shows the traceback
too. Anything else is a bug in the program and keeps its traceback.
"""
import argparse
import contextlib
import os
import sys
import traceback


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit status 2)."""

    status = 2


class DataError(Exception):
    """A file or folder the user gave (data, checkpoint, output) is missing, damaged or unwritable (exit 1)."""

    status = 1


@contextlib.contextmanager
def user_files(what):
    """Turn what a loader raises on a missing or damaged file into a DataError that says ``what`` was being done.

    The loaders' own messages name the file and the problem; this adds the step
    ("loading the training data") so the user knows which option to fix.
    """
    try:
        yield
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{what}: {error}") from error


def number(kind, low=None, inclusive=True, name=None):
    """An argparse type: ``kind`` (int or float) at least (or, not inclusive, above) ``low``."""
    bound = "" if low is None or name else (f" >= {low}" if inclusive else f" > {low}")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name or kind.__name__}{bound}, got {text!r}") from None
        if kind is float and value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number{bound}, got {text!r}")
        if low is not None and (value < low or (value == low and not inclusive)):
            raise argparse.ArgumentTypeError(f"expected {name or kind.__name__}{bound}, got {text!r}")
        return value

    parse.__name__ = name or kind.__name__  # argparse names the type in its messages
    return parse


positive_int = number(int, 1, name="a positive integer")
nonnegative_int = number(int, 0, name="a non-negative integer")
positive_float = number(float, 0, inclusive=False, name="a positive number")


def device(text):
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N`` (whether that GPU exists is checked when it is used)."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


class Parser(argparse.ArgumentParser):
    """argparse with ``--debug``, and errors that end as UsageError (so the same reporting applies)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show the traceback of an error too")

    def error(self, message):
        raise UsageError(f"{message}\n(see {self.prog} --help)")


def run(main, argv=None):
    """Call ``main(argv)`` and return its exit status, reporting a user's mistake as one paragraph.

    Under ``mpiexec`` every rank reports its own error, and a rank that fails
    alone stops the others (MPI_Abort) rather than leaving them waiting in a
    collective.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "minigrad"
    try:
        return main(argv)
    except (UsageError, DataError, KeyboardInterrupt) as error:
        status, message = (130, "interrupted (Ctrl-C)") if isinstance(error, KeyboardInterrupt) else \
            (error.status, str(error))
        if "--debug" in argv:
            traceback.print_exc()
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    _stop_other_ranks(status)
    return status


def _stop_other_ranks(status):
    """In a multi-rank run, end every rank: the others may be waiting for this one in a collective."""
    from minigrad import distributed as dist
    if dist.is_initialized() and dist.get_world_size() > 1:
        sys.stdout.flush()
        dist._default_group("train").comm.Abort(status)
