"""Sequential: layers applied one after another, named "0", "1", ... as in PyTorch."""
from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """``Sequential(a, b, c)(x)`` is ``c(b(a(x)))``. Keras: ``keras.Sequential([a, b, c])``.

    The layers are registered under their positions, so the state_dict keys
    are "0.weight", "1.running_mean", ...; an OrderedDict of name -> module
    names them instead. ``model[i]``, ``model[i:j]`` (a Sequential keeping
    the names), ``len(model)`` and ``for layer in model`` work as on a list.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        try:
            return items[index][1]
        except IndexError:
            raise IndexError(f"Sequential: index {index} is out of range for {len(items)} layers") from None

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Add a layer at the end, named by its position."""
        self.add_module(str(len(self)), module)
        return self
