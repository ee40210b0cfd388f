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
import math
import os
import uuid
import zipfile

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
    path = _checked_path(path, "save")
    if path == "":
        raise FileNotFoundError(errno.ENOENT, "save: no such file or directory (the path is empty)", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "save: is a directory; give the path of a file in it", path)
    arrays = {}
    root = _encode(obj, "", arrays, set())
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root})
    _write_atomically(path, {MANIFEST: np.array(manifest), **arrays})


def load(path, device=None):
    """Read a file written by ``save``; tensors go to the CPU, or to ``device`` if given.

    NumPy arrays come back as NumPy arrays, whatever ``device`` says.

    Raises FileNotFoundError if there is no such file, and ValueError naming
    the file and the problem if it is not a minigrad checkpoint or is damaged.
    Every array's size is checked against the bytes the file holds before
    memory is set aside for it, so a damaged header cannot ask for terabytes.
    """
    path = _checked_path(path, "load")
    if device is not None:
        backend.array_module(device)  # fail now on a bad device name or a missing GPU
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "load: no such file", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "load: is a directory, not a checkpoint file", path)
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ValueError(f"load: {path!r} is not a minigrad checkpoint: it is not a zip (.npz) archive")
        file.seek(0)
        with _reading(path, "not a readable .npz archive (truncated or damaged?)"):
            archive = _Archive(zipfile.ZipFile(file), path, os.fstat(file.fileno()).st_size)
        with archive.zip:
            manifest = _read_manifest(archive)
            try:
                return _decode(manifest["root"], archive, device)
            except RecursionError:  # on Pythons whose JSON parser may nest deeper than Python calls
                raise ValueError(f"load: {path!r} is damaged: its manifest is nested too deeply") from None


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
    the new one, never half of one. On any failure the temporary file is
    removed, and an OS error about it is reported with ``path``, the name the user gave.
    """
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(errno.ENOTDIR, "save: not a directory", directory)
        raise FileNotFoundError(errno.ENOENT, "save: no such directory", directory)
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez(file, **entries)  # to an open file: np.savez would append .npz to a name
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        if isinstance(error, OSError) and temporary in (error.filename, error.filename2):
            # OSError(errno, ...) is the matching subclass: PermissionError, IsADirectoryError, ...
            raise OSError(error.errno, f"save: {error.strerror}", path) from error
        raise
    _sync_directory(directory)


def _checked_path(path, caller):
    """``path`` (a str, bytes or os.PathLike) as a str, or a TypeError naming ``caller``."""
    try:
        return os.fsdecode(path)
    except TypeError:
        raise TypeError(f"{caller}: path must be a str, bytes or os.PathLike, got {type(path).__name__}") from None


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


# Deflate's greatest possible compression ratio: an entry that claims more bytes than
# that times its compressed size cannot be the file it says it is.
MAX_DEFLATE_RATIO = 1032
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))


class _Archive:
    """The open zip of a checkpoint: each entry ``name`` is the ``.npy`` file ``name.npy``."""

    def __init__(self, zip_file, path, size):
        self.zip, self.path, self.size = zip_file, path, size
        self.names = set(zip_file.namelist())

    def damaged(self, problem):
        return ValueError(f"load: {self.path!r} is damaged: {problem}")

    def malformed(self, problem):
        return self.damaged(f"its manifest is malformed: {problem}")

    def array(self, name):
        """The array in entry ``name``, its header checked against the entry's size before it is read."""
        if f"{name}.npy" not in self.names:
            raise self.damaged(f"the manifest refers to the entry {name!r}, which the file does not hold")
        info = self.zip.getinfo(f"{name}.npy")
        self._check_entry_size(name, info)
        with _reading(self.path, f"damaged: its entry {name!r} is not an .npy array"):
            with self.zip.open(info) as entry:
                version = np.lib.format.read_magic(entry)
                if version not in NPY_VERSIONS:
                    raise ValueError(f"unknown .npy format version {version}")
                # version 3.0 differs from 2.0 only in the header's text encoding (UTF-8 field
                # names), which does not change the shape or the item size read here
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(entry)
                data_bytes = info.file_size - entry.tell()
        if any(size < 0 for size in shape):
            raise self.damaged(f"its entry {name!r} claims the shape {shape}")
        claimed = math.prod(shape) * dtype.itemsize
        if claimed != data_bytes:
            raise self.damaged(f"its entry {name!r} claims shape {shape} of {dtype} ({claimed} bytes), "
                               f"but holds {data_bytes} bytes of data")
        with _reading(self.path, f"damaged: its entry {name!r} cannot be read"):
            with self.zip.open(info) as entry:
                return np.lib.format.read_array(entry, allow_pickle=False)

    def _check_entry_size(self, name, info):
        """Refuse an entry whose sizes in the zip's directory cannot be true of this file."""
        if info.compress_type == zipfile.ZIP_STORED:  # what np.savez writes
            possible = info.file_size == info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:  # what np.savez_compressed writes
            possible = info.file_size <= MAX_DEFLATE_RATIO * info.compress_size + 1024
        else:
            raise self.damaged(f"its entry {name!r} is compressed with zip method {info.compress_type}, "
                               "which np.savez never uses")
        if not possible or info.compress_size > self.size:
            raise self.damaged(f"its entry {name!r} claims {info.file_size} bytes "
                               f"({info.compress_size} compressed) in a file of {self.size} bytes")


def _read_manifest(archive):
    path = archive.path
    if f"{MANIFEST}.npy" not in archive.names:
        raise ValueError(f"load: {path!r} is an .npz archive but not a minigrad checkpoint: "
                         f"it has no {MANIFEST!r} entry")
    text = archive.array(MANIFEST)
    if text.dtype.kind != "U" or text.ndim != 0:
        raise archive.damaged("its manifest is not a string")
    with _reading(path, "damaged: its manifest is not valid JSON"):
        manifest = json.loads(str(text))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "root" not in manifest:
        raise ValueError(f"load: {path!r} is not a minigrad checkpoint: its manifest is not in the {FORMAT!r} format")
    version = manifest.get("version")
    if type(version) is not int or version != VERSION:
        raise ValueError(f"load: {path!r} has format version {version!r}, "
                         f"but this minigrad reads version {VERSION}")
    return manifest


def _decode(node, archive, device):
    """The value a manifest node stands for, its arrays read from ``archive``; every field checked."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        raise archive.damaged("its manifest holds an untagged list")
    kind = node.get("type")  # json gives dicts and lists only: node is a dict here
    if kind == "dict":
        result = {}
        for item in _field(node, "items", list, archive):
            if not (isinstance(item, list) and len(item) == 2
                    and isinstance(item[0], (str, int)) and not isinstance(item[0], bool)):
                raise archive.malformed(f"a dict item is not a [key, value] pair with a str or int key: {item!r:.80}")
            result[item[0]] = _decode(item[1], archive, device)
        return result
    if kind in ("list", "tuple"):
        items = [_decode(item, archive, device) for item in _field(node, "items", list, archive)]
        return items if kind == "list" else tuple(items)
    if kind not in ("ndarray", "numpy_scalar", "tensor"):
        raise archive.damaged(f"its manifest has a node of unknown type {kind!r}")
    entry = _field(node, "entry", str, archive)
    if entry == MANIFEST:
        raise archive.malformed(f"a {kind!r} node refers to the manifest's own entry")
    array = archive.array(entry)
    if kind == "ndarray":
        return array
    if kind == "numpy_scalar":
        if array.ndim != 0:
            raise archive.malformed(f"the numpy_scalar {entry!r} has shape {array.shape}")
        return array[()]
    requires_grad = _field(node, "requires_grad", bool, archive)
    if array.dtype.kind not in "biuf":  # what a Tensor may hold: bools, integers, floats
        raise archive.malformed(f"the tensor {entry!r} has dtype {array.dtype}, not one of numbers")
    if requires_grad and not backend.is_floating(array.dtype):
        raise archive.malformed(f"the tensor {entry!r} of dtype {array.dtype} requires grad")
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def _field(node, key, kind, archive):
    """``node[key]``, which must be of type ``kind``."""
    value = node.get(key)
    if not isinstance(value, kind):
        raise archive.malformed(f"a {node.get('type')!r} node has {key!r} = {value!r:.80}, "
                                f"not a {kind.__name__}")
    return value
