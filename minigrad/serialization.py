def save(obj, path):
    raise NotImplementedError


def load(path, device=None):
    raise NotImplementedError
