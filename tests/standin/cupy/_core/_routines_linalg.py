"""cupy._core._routines_linalg in the stand-in: the compute type of matrix products (TF32 or not).

The stand-in computes products in the arrays' own precision whatever is set;
it records the setting so a test can check that minigrad pins it.
"""
import os

import numpy

COMPUTE_TYPE_TBD, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_PEDANTIC = 0, 1, 2
COMPUTE_TYPE_FP16, COMPUTE_TYPE_FP32, COMPUTE_TYPE_FP64, COMPUTE_TYPE_BF16, COMPUTE_TYPE_TF32 = 3, 4, 5, 6, 7
compute_types = {}


def set_compute_type(dtype, compute_type):
    compute_types[numpy.dtype(dtype)] = compute_type


def get_compute_type(dtype):
    """As CuPy: unset, float32 products use TF32 when $CUPY_TF32 is 1 (and the GPU has it)."""
    dtype = numpy.dtype(dtype)
    if dtype not in compute_types:
        tf32 = dtype == numpy.float32 and os.environ.get("CUPY_TF32", "0") != "0"
        compute_types[dtype] = COMPUTE_TYPE_TF32 if tf32 else COMPUTE_TYPE_DEFAULT
    return compute_types[dtype]
