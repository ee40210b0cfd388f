"""SGD: a step against the gradient, with optional momentum and weight decay."""
from .optimizer import Optimizer, _check, _check_flag, _check_numbers


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay.

    With gradient g, weight decay wd, momentum mu, dampening tau, per step::

        g <- g + wd * p                                  (L2 penalty wd/2 * |p|^2)
        buf <- g at the first step, then buf <- mu * buf + (1 - tau) * g
        g <- g + mu * buf  if nesterov,  else  g <- buf
        p <- p - lr * g

    Keras: ``SGD(learning_rate, momentum, nesterov)`` keeps the velocity
    v = -lr * buf instead (the same steps while lr is constant, but a new lr
    takes effect gradually there); its ``weight_decay`` is decoupled
    (p <- p - lr * wd * p), which differs from the one here once there is momentum.
    """

    def __init__(self, params, lr, momentum=0, weight_decay=0, nesterov=False, dampening=0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, dampening=dampening))

    def check(self, group):
        _check_numbers(group, "SGD", "lr", "momentum", "weight_decay", "dampening")
        _check_flag(group, "SGD", "nesterov")
        _check(group["lr"] >= 0, f"SGD: lr must be >= 0, got {group['lr']}")
        _check(group["momentum"] >= 0, f"SGD: momentum must be >= 0, got {group['momentum']}")
        _check(group["weight_decay"] >= 0, f"SGD: weight_decay must be >= 0, got {group['weight_decay']}")
        _check(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
               "SGD: nesterov=True needs momentum > 0 and dampening=0")

    def update(self, p, grad, group):
        # Python floats, so that NumPy computes in the parameter's dtype
        # (a NumPy float64 hyperparameter would promote float32 arrays).
        lr, momentum, weight_decay = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if weight_decay != 0:
            grad = grad + weight_decay * p.data  # a new array: p.grad stays as it is
        if momentum != 0:
            state = self.state.setdefault(p, {})
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - float(group["dampening"])) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        p.data -= lr * grad
