"""cupy.cuda.device in the stand-in: the cuBLAS handle minigrad's probe asks for."""


def get_cublas_handle():
    return 1


def get_device_id():
    from . import _current
    return _current()
