"""cupy.cuda in the stand-in: two devices, the current one per thread, and the library probes minigrad makes."""
from .. import _local, _standin, _sync, DEVICE_COUNT
from . import device, nvrtc, runtime  # noqa: F401


class Device:
    """A device id; ``with Device(n):`` makes it current for the block, as in CuPy."""

    def __init__(self, device=None):
        self.id = _current() if device is None else int(device)
        if not 0 <= self.id < DEVICE_COUNT:
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._previous = []

    compute_capability = property(lambda self: "90")

    def __enter__(self):
        self._previous.append(_current())
        _local.device = self.id
        return self

    def __exit__(self, *exc_info):
        _local.device = self._previous.pop()

    def use(self):
        _local.device = self.id

    def synchronize(self):
        _sync()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _current():
    return getattr(_local, "device", 0)


def get_device_id():
    return _current()


def is_available():
    return True


class Stream:
    null = None

    def synchronize(self):
        _sync()


def get_current_stream():
    return Stream()


__all__ = ["Device", "device", "runtime", "nvrtc", "Stream", "_standin"]
