"""Adam and AdamW, and the in-place update they share (``adam_step``)."""
from .. import backend, config
from .optimizer import Optimizer, _check, _check_numbers, _is_real


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): steps scaled by running averages of the gradient and its square.

    With gradient g_t at step t = 1, 2, ... and m_0 = v_0 = 0::

        g_t <- g_t + weight_decay * p                  (L2 penalty, only if weight_decay > 0)
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t        first moment, state "exp_avg"
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2      second moment, state "exp_avg_sq"
        m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)    bias correction
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Bias correction undoes the pull towards the zero start: early averages
    would otherwise be too small. As PyTorch does, the last line is computed
    as ``p -= (lr / (1 - beta1^t)) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)``.

    Keras: ``Adam(learning_rate, beta_1, beta_2, epsilon)``, where epsilon
    (default 1e-7) is added to sqrt(v_t) before the bias correction, i.e. it
    is eps * sqrt(1 - beta2^t) here; Keras' ``weight_decay`` is decoupled, as in AdamW.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check(self, group):
        name = type(self).__name__
        _check_numbers(group, name, "lr", "eps", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or not all(_is_real(beta) for beta in betas):
            raise TypeError(f"{name}: betas must be a pair of real numbers (beta1, beta2), got {betas!r}")
        _check(len(betas) == 2, f"{name}: betas must be a pair (beta1, beta2), got {betas}")
        _check(group["lr"] >= 0, f"{name}: lr must be >= 0, got {group['lr']}")
        _check(group["eps"] >= 0, f"{name}: eps must be >= 0, got {group['eps']}")
        for number, beta in enumerate(betas, start=1):
            _check(0 <= beta < 1, f"{name}: beta{number} must be in [0, 1), got {beta}")
        _check(group["weight_decay"] >= 0, f"{name}: weight_decay must be >= 0, got {group['weight_decay']}")

    def update(self, p, grad, group):
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        xp = backend.get_array_module(p.data)
        state = self.state.setdefault(p, {})
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                p.data *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * p.data  # a new array: p.grad stays as it is
        step_size, bias_correction2_sqrt = lr / (1 - beta1 ** t), (1 - beta2 ** t) ** 0.5
        config.chosen(adam_step)(p.data, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size)


def adam_step(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """One Adam step on the arrays p, m and v, in place; ``grad`` already holds any L2 term.

    The operations of PyTorch's formula, in the order that ``fast/adam.py``
    (and its GPU kernel) rounds them, so that both give the same bits.
    """
    xp = backend.get_array_module(p)
    m[...] = beta1 * m + (1 - beta1) * grad                            # m_t
    v[...] = beta2 * v + (1 - beta2) * (grad * grad)                   # v_t
    denominator = xp.sqrt(v) / bias_correction2_sqrt + eps             # sqrt(v_hat) + eps
    p -= step_size * (m / denominator)                                 # step_size = lr / (1 - beta1^t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019).

    Before the Adam step on the plain gradient, the weights shrink::

        p <- p * (1 - lr * weight_decay)

    so the decay does not pass through Adam's per-weight scaling (in Adam the
    L2 term is divided by sqrt(v_hat) like the rest of the gradient).
    Keras: ``AdamW(learning_rate, weight_decay, beta_1, beta_2, epsilon)``,
    the same rule, with weight_decay defaulting to 0.004 there, 0.01 here.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
