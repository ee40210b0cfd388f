"""save and load: a checkpoint as one ``.npz`` file that needs no pickle to read.

A checkpoint (a model's state_dict, an optimizer's, a training loop's
counters) is a tree of dicts, lists and tuples whose leaves are tensors,
NumPy arrays, numbers, strings and None. ``save`` splits the tree in two:

- each array (a tensor's data included) becomes one entry, ``array0``,
  ``array1``, ..., of a NumPy ``.npz`` archive (a zip of ``.npy`` files),
  which keeps its dtype, shape and bits exactly;
- the tree becomes a JSON manifest, stored as the entry ``manifest`` (a
  unicode string array), in which each array is replaced by its entry name.
  Tagged nodes keep what plain JSON would lose: tuples, int dict keys, a
  tensor's ``requires_grad`` and device. For example ``{"step": 3, "w": t}`` is
  ``{"type": "dict", "items": [["step", 3], ["w", {"type": "tensor",
  "entry": "array0", "requires_grad": true, "device": "cpu"}]]}``.

So ``np.load(path, allow_pickle=False)`` opens a checkpoint anywhere, and
loading one never runs code from it (unpickling can). ``save`` writes
atomically: a crash mid-save leaves the previous file at ``path`` intact.
"""
import contextlib
import errno
import json
import os
import uuid

import numpy as np

from . import backend
from .tensor import Tensor

FORMAT = "minigrad-checkpoint"
VERSION = 1
MANIFEST = "manifest"
ZIP_MAGIC = b"PK\x03\x04"


def save(obj, path):
    """Write ``obj`` (a dict of tensors, arrays, numbers, strings, None, nested dicts, lists, tuples) to ``path``.

    ``path`` is used exactly as given (no ``.npz`` is appended). Dict keys are
    str or int. Tensors on a GPU are copied to NumPy; the manifest records
    their device. A dict subclass (OrderedDict) loads as a dict, a Tensor
    subclass (Parameter) as a Tensor. This is ``torch.save`` without pickle; Keras
    writes weights to HDF5 with ``model.save_weights`` instead.
    """
    path = os.fspath(path)
    arrays = {}
    root = _encode(obj, "", arrays, set())
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root})
    _write_atomically(path, {MANIFEST: np.array(manifest), **arrays})


def load(path, device=None):
    """Read a file written by ``save``; tensors go to the CPU, or to ``device`` if given.

    NumPy arrays come back as NumPy arrays, whatever ``device`` says.

    Raises FileNotFoundError if there is no such file, and ValueError naming
    the file and the problem if it is not a minigrad checkpoint or is damaged.
    """
    path = os.fspath(path)
    if device is not None:
        backend.array_module(device)  # fail now on a bad device name or a missing GPU
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "load: no such file", path)
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ValueError(f"load: {path!r} is not a minigrad checkpoint: it is not a zip (.npz) archive")
        file.seek(0)
        with _reading(path, "not a readable .npz archive (truncated or damaged?)"):
            archive = np.load(file, allow_pickle=False)
        with archive:
            manifest = _read_manifest(archive, path)
            try:
                return _decode(manifest["root"], archive, path, device)
            except (KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"load: {path!r} is damaged: its manifest is malformed "
                                 f"({type(error).__name__}: {error})") from None


# ----- save: the tree to a manifest and arrays ---------------------------------------
def _encode(value, where, arrays, open_containers):
    """The manifest node for ``value`` (found at key path ``where``); its arrays go into ``arrays``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Tensor):
        return {"type": "tensor", "entry": _add_array(arrays, backend.as_numpy(value.data), where),
                "requires_grad": value.requires_grad, "device": value.device}
    if isinstance(value, np.generic):  # before float: np.float64 is a subclass of float
        return {"type": "numpy_scalar", "entry": _add_array(arrays, np.asarray(value), where)}
    if isinstance(value, (int, float)):
        return value  # JSON keeps ints exact and writes floats with repr, which round-trips
    if type(value) is np.ndarray:  # not a subclass such as a masked array: it would lose its mask
        return {"type": "ndarray", "entry": _add_array(arrays, value, where)}
    if isinstance(value, (dict, list, tuple)):
        if id(value) in open_containers:
            raise ValueError(f"save: the {type(value).__name__} at {_name(where)} contains itself")
        open_containers.add(id(value))
        if isinstance(value, dict):
            items = [[_checked_key(key, where), _encode(item, _join(where, key), arrays, open_containers)]
                     for key, item in value.items()]
            node = {"type": "dict", "items": items}
        else:
            items = [_encode(item, f"{where}[{i}]", arrays, open_containers) for i, item in enumerate(value)]
            node = {"type": "tuple" if isinstance(value, tuple) else "list", "items": items}
        open_containers.discard(id(value))
        return node
    hint = "; put it in a Tensor (mg.tensor(array))" if backend.is_cupy_array(value) else ""
    raise TypeError(f"save: cannot store a {type(value).__name__} at {_name(where)} (supported: dict, list, "
                    f"tuple, Tensor, NumPy array, int, float, bool, str, None){hint}")


def _add_array(arrays, array, where):
    if array.dtype.hasobject:
        raise TypeError(f"save: cannot store a NumPy array of dtype object at {_name(where)}: "
                        "reading it back would need pickle")
    name = f"array{len(arrays)}"
    arrays[name] = array
    return name


def _checked_key(key, where):
    if not isinstance(key, (str, int)):
        raise TypeError(f"save: cannot store a dict key of type {type(key).__name__} ({key!r}) at "
                        f"{_name(where)}: keys must be str or int")
    return key


def _join(where, key):
    return f"{where}.{key}" if where else str(key)


def _name(where):
    return where or "the top level"


def _write_atomically(path, entries):
    """Write to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    ``os.replace`` is atomic, so a reader, or a crash, sees the old file or
    the new one, never half of one. On any failure the temporary file is removed.
    """
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "save: no such directory", directory)
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez(file, **entries)  # to an open file: np.savez would append .npz to a name
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _sync_directory(directory)


def _sync_directory(directory):
    """Make the rename itself durable (POSIX); best effort, as some file systems refuse."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ----- load: the manifest and arrays back to the tree ------------------------------------
@contextlib.contextmanager
def _reading(path, problem):
    """Turn whatever the zip, npy or JSON readers raise on a damaged file into one clear ValueError."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as error:  # zipfile alone raises BadZipFile, EOFError, OSError, NotImplementedError...
        raise ValueError(f"load: {path!r} is {problem} ({type(error).__name__}: {error})") from None


def _read_entry(archive, name, path):
    if name not in archive.files:
        raise ValueError(f"load: {path!r} is damaged: the manifest refers to the entry {name!r}, "
                         "which the file does not hold")
    with _reading(path, f"damaged: its entry {name!r} cannot be read"):
        return archive[name]


def _read_manifest(archive, path):
    if MANIFEST not in archive.files:
        raise ValueError(f"load: {path!r} is an .npz archive but not a minigrad checkpoint: "
                         f"it has no {MANIFEST!r} entry")
    text = _read_entry(archive, MANIFEST, path)
    if text.dtype.kind != "U" or text.ndim != 0:
        raise ValueError(f"load: {path!r} is damaged: its manifest is not a string")
    with _reading(path, "damaged: its manifest is not valid JSON"):
        manifest = json.loads(str(text))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "root" not in manifest:
        raise ValueError(f"load: {path!r} is not a minigrad checkpoint: its manifest is not in the {FORMAT!r} format")
    if manifest.get("version") != VERSION:
        raise ValueError(f"load: {path!r} has format version {manifest.get('version')!r}, "
                         f"but this minigrad reads version {VERSION}")
    return manifest


def _decode(node, archive, path, device):
    """The value a manifest node stands for, its arrays read from ``archive``."""
    if not isinstance(node, dict):
        if isinstance(node, list):
            raise ValueError(f"load: {path!r} is damaged: its manifest holds an untagged list")
        return node  # None, bool, int, float, str
    kind = node["type"]
    if kind == "dict":
        return {key: _decode(item, archive, path, device) for key, item in node["items"]}
    if kind in ("list", "tuple"):
        items = [_decode(item, archive, path, device) for item in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "ndarray":
        return _read_entry(archive, node["entry"], path)
    if kind == "numpy_scalar":
        return _read_entry(archive, node["entry"], path)[()]
    if kind == "tensor":
        array = _read_entry(archive, node["entry"], path)
        if device is not None:
            array = backend.to_device(array, device)
        return Tensor(array, requires_grad=bool(node["requires_grad"]))
    raise ValueError(f"load: {path!r} is damaged: its manifest has a node of unknown type {kind!r}")
