"""minigrad: a small deep-learning framework with reverse-mode autodiff on NumPy or CuPy."""
from . import config  # first: it sets OpenBLAS's thread timeout before NumPy loads
from . import backend, errors
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad
from .backend import float32, float64, int64, manual_seed
from .tensor import Tensor, result_type, tensor
from .factories import arange, ones, ones_like, rand, randn, zeros, zeros_like
from .functions import (abs, argmax, clip, exp, flatten, log, log_softmax, max, mean, permute,
                        relu, reshape, sigmoid, softmax, sqrt, sum, tanh, transpose, var, view)
from . import nn, optim, utils
from . import data
from . import distributed
from .serialization import load, save
from . import fast

__version__ = "0.1.0"
