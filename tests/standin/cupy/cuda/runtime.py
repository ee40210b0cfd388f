"""cupy.cuda.runtime in the stand-in: what minigrad asks of the CUDA runtime."""
from .. import DEVICE_COUNT


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount():
    return DEVICE_COUNT


def getDeviceProperties(device):
    return {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": 1 << 34, "major": 9, "minor": 0,
            "multiProcessorCount": 1}


def runtimeGetVersion():
    return 12090


def driverGetVersion():
    return 12090
