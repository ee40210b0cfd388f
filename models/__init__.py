"""The networks of the seed documents, one module each, built from minigrad.nn.

``build(name, **options)`` makes a model by its SEED_MODELS.md name;
``DEFAULTS[name]`` holds the seed's own training settings.
"""
import inspect

from minigrad.utils import summary  # noqa: F401  (the scripts print a model's layers with it)

from . import catsdogs_deep, catsdogs_logreg, catsdogs_wide, cifar_bn, mlp_bn, mnist_bn

MODELS = {"mnist_bn": mnist_bn, "cifar_bn": cifar_bn, "catsdogs_logreg": catsdogs_logreg,
          "catsdogs_wide": catsdogs_wide, "catsdogs_deep": catsdogs_deep, "mlp_bn": mlp_bn}
DEFAULTS = {name: module.DEFAULTS for name, module in MODELS.items()}


def init_choices(name):
    """The ``init=`` values model ``name`` takes (its own default first); empty if it takes none."""
    module = MODELS[name]
    parameter = inspect.signature(module.build).parameters.get("init")
    if parameter is None:
        return ()
    return tuple(getattr(module, "INITS", (parameter.default, "pytorch")))


def build(name, **options):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name].build(**options)
