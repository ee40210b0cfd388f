"""The layers: each holds its weights and settings, and its forward calls one function of ``functional``.

Constructor arguments, defaults, initialisation, state_dict keys and printed
form are PyTorch's, so a model written for ``torch.nn`` reads the same here
and can load the same weights.
"""
import math

from .. import backend
from ..factories import ones, zeros
from ..ops import dropout as dropout_op
from ..ops.common import as_pair
from ..ops.conv import check_channel_counts, conv_options, positive_pair
from ..tensor import tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _init_like_pytorch(weight, bias):
    """PyTorch's default for Linear and Conv2d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    For the weight that is ``kaiming_uniform_(a=sqrt(5))``. Keras starts
    Dense and Conv2D kernels glorot-uniform and biases at zero instead.
    """
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in)
        init.uniform_(bias, -bound, bound)


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features). Keras: ``Dense(out_features)``."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(zeros(out_features, in_features))
        self.register_parameter("bias", Parameter(zeros(out_features)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_like_pytorch(self.weight, self.bias)

    def forward(self, x):
        if x.ndim >= 1 and x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: input has {x.shape[-1]} features (input shape {x.shape})")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution over NCHW images; ``padding`` may also be ``"same"`` (stride 1) or ``"valid"`` as in TF/Keras.

    The weight is (out_channels, in_channels // groups, kH, kW). Every setting
    is checked here, when the layer is built, so a bad one fails at its line
    of the model rather than in the first forward.
    Keras: ``Conv2D(out_channels, kernel_size, strides=stride, padding=..., dilation_rate=dilation,
    groups=groups)`` on NHWC images; ``DepthwiseConv2D(kernel_size, depth_multiplier=k)`` is
    ``Conv2d(C, k * C, kernel_size, groups=C)``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        self.kernel_size = positive_pair(kernel_size, "kernel_size", "Conv2d")
        self.stride, _, self.dilation, self.groups = conv_options("Conv2d", stride, padding, dilation, groups)
        self.in_channels, self.out_channels = check_channel_counts("Conv2d", in_channels, out_channels, groups)
        self.padding = padding if isinstance(padding, str) else as_pair(padding, "padding", "Conv2d")
        self.weight = Parameter(zeros(out_channels, in_channels // groups, *self.kernel_size))
        self.register_parameter("bias", Parameter(zeros(out_channels)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_like_pytorch(self.weight, self.bias)

    def forward(self, x):
        if x.ndim == 4 and x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: input has {x.shape[1]} channels (input shape {x.shape})")
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the input shape they accept.

    Learns gamma (``weight``, starts at 1) and beta (``bias``, starts at 0)
    when ``affine``. With ``track_running_stats`` it keeps running averages
    (buffers ``running_mean``, ``running_var``, ``num_batches_tracked``) for
    eval mode; without, it normalises with the batch's statistics always.
    ``momentum`` is 1 - TF/Keras ``decay`` (Keras' default 0.99 is 0.01 here);
    ``momentum=None`` keeps a cumulative average over all batches instead.
    Keras' ``BatchNormalization`` defaults to eps 1e-3, PyTorch to 1e-5.
    """

    input_ndim = None     # 2 or 4
    input_shape = None    # "(N, C)" or "(N, C, H, W)"
    feature_name = None   # "features" or "channels"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.register_parameter("weight", Parameter(ones(num_features)) if affine else None)
        self.register_parameter("bias", Parameter(zeros(num_features)) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features))
            self.register_buffer("running_var", ones(num_features))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=backend.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        """Forget the running averages: mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        name = type(self).__name__
        if x.ndim != self.input_ndim:
            raise ValueError(f"{name}: expected {self.input_ndim}-D input {self.input_shape}, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}): input has {x.shape[1]} {self.feature_name} "
                             f"(input shape {x.shape})")
        running_mean, running_var, use_batch_stats, momentum = self.this_step()
        return F.batch_norm(x, running_mean, running_var, self.weight, self.bias,
                            training=use_batch_stats, momentum=momentum, eps=self.eps)

    def this_step(self):
        """(running_mean, running_var, use_batch_stats, momentum) for this forward; counts the batch.

        Batch statistics in training, and also in eval when there are no
        running ones; in training without tracking, the buffers (if any) are
        left untouched (passed as None).
        """
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # a cumulative average: batch k gets weight 1/k
                momentum = 1.0 / self.num_batches_tracked.item()
        use_batch_stats = self.training or self.running_mean is None
        running_mean, running_var = self.running_mean, self.running_var
        if self.training and not self.track_running_stats:
            running_mean = running_var = None
        return running_mean, running_var, use_batch_stats, momentum

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) input, per feature over the batch (after a Linear layer)."""

    input_ndim, input_shape = 2, "(N, C)"
    feature_name = "features"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input, per channel over batch and pixels (after a Conv2d)."""

    input_ndim, input_shape = 4, "(N, C, H, W)"
    feature_name = "channels"


class _Pool2d(Module):
    """Window, stride (default: the window, so windows do not overlap) and padding of a pooling layer."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum of each kernel_size window. Keras: ``MaxPooling2D``."""

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return super().extra_repr() + ", dilation=1, ceil_mode=False"


class AvgPool2d(_Pool2d):
    """The mean of each kernel_size window (zero padding counted). Keras: ``AveragePooling2D``."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    """Global average pooling to (N, C, 1, 1) (output_size 1). Keras: ``GlobalAveragePooling2D(keepdims=True)``."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """1 / (1 + e^-x), elementwise."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x), elementwise."""

    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    """e^x / sum e^x along ``axis`` (PyTorch's ``dim``)."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class Dropout(Module):
    """Inverted dropout with drop probability p in training; the identity in eval mode.

    Keras: ``Dropout(rate=p)``; TF 1: ``tf.nn.dropout(x, keep_prob=1 - p)``.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_op.check_probability(p, "Dropout")

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"  # as PyTorch prints it; there is no in-place variant here


class Flatten(Module):
    """Merge axes start_dim..end_dim into one: (N, C, H, W) -> (N, C H W) by default. Keras: ``Flatten()``."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class CrossEntropyLoss(Module):
    """``F.cross_entropy`` as a module: softmax cross-entropy of logits and class indices or probabilities.

    ``weight`` (a tensor of C class weights, or None) is a buffer, as in
    PyTorch: it is in the state_dict and moves with ``.to(device)``.
    Keras: ``categorical_crossentropy`` on a softmax output (here the softmax is inside the loss),
    ``CategoricalCrossentropy(label_smoothing=...)``, ``SparseCategoricalCrossentropy(ignore_class=...)``.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class MSELoss(Module):
    """``F.mse_loss`` as a module: the mean squared error. Keras: ``mean_squared_error``."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
