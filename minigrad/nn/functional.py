"""The layers as plain functions, ``import minigrad.nn.functional as F``: one graph node each.

Each function hands tensors to a node of ``minigrad.ops``, whose forward and
backward rules live there side by side; the modules of ``minigrad.nn`` call
these functions with the weights they hold.
"""
from ..ops import conv, dropout as dropout_op, loss, matmul, norm, pool
from ..tensor import Tensor, tensor
# The activations are the tensor methods (t.relu()), as mg.relu(t) is: one rule under three names.
from ..functions import log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401


def _as_tensor(target, like):
    """A target given as a NumPy array or list becomes a tensor on ``like``'s device."""
    return target if isinstance(target, Tensor) else tensor(target, device=like.device)


def linear(x, weight, bias=None):
    """x W^T + b, weight of shape (out_features, in_features). Keras: ``Dense(out_features)`` (kernel W^T)."""
    return matmul.Linear.apply(x, weight, bias)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of NCHW input with weight (out_channels, in_channels // groups, kH, kW), as PyTorch's.

    ``stride``, ``padding`` and ``dilation`` an int or a pair; ``padding`` also
    ``"same"`` (stride 1) or ``"valid"``, as TF/Keras spell them. ``groups``
    must divide both channel counts. Keras: ``dilation_rate=``, ``groups=``;
    ``DepthwiseConv2D(depth_multiplier=k)`` is groups = in_channels with k
    output channels per input channel.
    """
    return conv.Conv2d.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """The maximum of each window; stride defaults to kernel_size. Keras: ``MaxPooling2D``."""
    return pool.MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """The mean of each window (zero padding counted); stride defaults to kernel_size. Keras: ``AveragePooling2D``."""
    return pool.AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def adaptive_avg_pool2d(x, output_size):
    """(N, C, H, W) -> (N, C, 1, 1), each channel's mean (output_size 1). Keras: ``GlobalAveragePooling2D``."""
    return pool.AdaptiveAvgPool2d.apply(x, output_size=output_size)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise each channel of (N, C) or (N, C, H, W) by batch (training) or running statistics.

    In training the running tensors (or None) are updated in place:
    running = (1 - momentum) running + momentum batch_stat. TF/Keras
    ``decay`` (their ``momentum``) d is ``momentum = 1 - d``.
    """
    return norm.BatchNorm.apply(x, weight, bias,
                                running_mean=None if running_mean is None else running_mean.data,
                                running_var=None if running_var is None else running_var.data,
                                training=training, momentum=momentum, eps=eps)


def dropout(x, p=0.5, training=True):
    """Zero each entry with probability p and scale the rest by 1 / (1 - p); x itself when not training.

    Keras: ``Dropout(rate=p)``; TF 1 ``tf.nn.dropout`` takes ``keep_prob = 1 - p``.
    """
    dropout_op.check_probability(p)  # in eval mode too: a wrong p is wrong whatever the mode
    if not training or p == 0:
        return x
    return dropout_op.Dropout.apply(x, p=p)


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits (N, C) with class indices (N,) or probabilities (N, C), as PyTorch's.

    ``weight`` (C,) scales each class's term; with class indices ``"mean"`` then
    divides by the sum of the targets' weights, not by N. Rows whose index is
    ``ignore_index`` add 0 and get no gradient (all ignored: a NaN mean, as in
    PyTorch). ``label_smoothing`` e mixes the target with the uniform
    distribution: (1 - e) target + e / C.

    Keras: a ``Dense(C, activation="softmax")`` output with ``categorical_crossentropy``
    (one-hot targets; ``CategoricalCrossentropy(label_smoothing=e)`` smooths the same way)
    or ``sparse_categorical_crossentropy`` (indices; ``ignore_class=`` for ignore_index);
    here the softmax is inside the loss, so the model outputs logits. Keras'
    ``class_weight`` in ``fit`` divides a batch's weighted sum by the batch size instead.
    """
    if weight is not None:
        weight = _as_tensor(weight, logits)
        if weight.device != logits.device:
            raise RuntimeError(f"cross_entropy: weight is on {weight.device} but logits are on {logits.device}; "
                               f"move the weight (or the CrossEntropyLoss holding it) with .to({logits.device!r})")
    return loss.CrossEntropy.apply(logits, _as_tensor(target, logits), weight, reduction=reduction,
                                   ignore_index=ignore_index, label_smoothing=label_smoothing)


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum, or each) of (input - target)^2. Keras: ``mean_squared_error``."""
    return loss.MSELoss.apply(input, _as_tensor(target, input), reduction=reduction)
