"""Neural-network modules: ``Module``, ``Parameter``, the layers, and ``functional`` and ``init``."""
from . import functional, init
from .containers import Sequential
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, CrossEntropyLoss,
                     Dropout, Flatten, Linear, MaxPool2d, MSELoss, ReLU, Sigmoid, Softmax, Tanh)
from .module import Module, Parameter
from . import parallel
from .sync_batchnorm import SyncBatchNorm

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "Linear", "Conv2d", "BatchNorm1d",
           "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ReLU", "Sigmoid", "Tanh",
           "Softmax", "Dropout", "Flatten", "CrossEntropyLoss", "MSELoss", "parallel", "SyncBatchNorm"]
