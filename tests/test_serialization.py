"""mg.save / mg.load: exact round trips, a file NumPy opens without pickle, atomic writes, clear errors."""
import errno
import io
import json
import math
import os
import struct
import sys
import zipfile

import numpy as np
import pytest

import minigrad as mg


def checkpoint():
    """One of every supported kind of value, nested."""
    return {
        "model": {
            "weight": mg.tensor(np.random.default_rng(0).standard_normal((3, 2)), requires_grad=True),
            "weight32": mg.tensor([[1.5, -2.0]], dtype=mg.float32),
            "num_batches_tracked": mg.tensor(np.int64(7)),  # a 0-d int64 tensor
            "mask": mg.tensor([True, False]),
        },
        "optimizer": {"state": {0: {"step": 3, "exp_avg": mg.zeros(2, dtype=mg.float64)}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "empty_array": np.zeros((0, 4), dtype=np.float16),
        "strings": np.array(["a", "bcd"]),
        "numpy_scalars": [np.float32(1.5), np.int64(-2), np.bool_(True)],
        "int": 3, "big_int": 2 ** 70, "negative": -1,
        "floats": [0.1, -0.0, 5e-324, 1e308, float("inf"), float("-inf"), float("nan"), 1.0],
        "bool": True, "none": None, "text": "héllo ✓ \"quoted\" \n\u0000",
        "tuple": (1, (2.5, "x"), []),
        "mixed_keys": {"1": "str key", 1: "int key", -5: None},
        "empty": {}, "empty_list": [], "empty_tuple": (),
    }


def assert_same(saved, loaded, where="root"):
    """Equal values and exactly the same types, all the way down (float bits included)."""
    assert type(loaded) is type(saved) or (isinstance(saved, mg.Tensor) and type(loaded) is mg.Tensor), where
    if isinstance(saved, dict):
        assert list(saved) == list(loaded), where
        assert [type(key) for key in saved] == [type(key) for key in loaded], where
        for key in saved:
            assert_same(saved[key], loaded[key], f"{where}.{key}")
    elif isinstance(saved, (list, tuple)):
        assert len(saved) == len(loaded), where
        for i, (a, b) in enumerate(zip(saved, loaded)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(saved, mg.Tensor):
        assert (loaded.dtype, loaded.shape, loaded.requires_grad, loaded.device) == \
               (saved.dtype, saved.shape, saved.requires_grad, "cpu"), where
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=where)
    elif isinstance(saved, (np.ndarray, np.generic)):
        assert (loaded.dtype, loaded.shape) == (saved.dtype, saved.shape), where
        np.testing.assert_array_equal(loaded, saved, err_msg=where)
    elif isinstance(saved, float):
        same_bits = struct.pack("<d", loaded) == struct.pack("<d", saved)
        assert same_bits or (math.isnan(saved) and math.isnan(loaded)), where
    else:
        assert loaded == saved, where


def test_round_trip_keeps_every_type_and_value(tmp_path):
    saved = checkpoint()
    mg.save(saved, tmp_path / "checkpoint.npz")
    assert_same(saved, mg.load(tmp_path / "checkpoint.npz"))


def test_top_level_can_be_any_supported_value(tmp_path):
    for value in [mg.tensor(np.float64(2.5)), [1, (2,)], "text", None]:
        mg.save(value, tmp_path / "value")
        assert_same(value, mg.load(tmp_path / "value"))


def test_numpy_opens_the_file_without_pickle(tmp_path):
    path = tmp_path / "checkpoint.npz"
    mg.save(checkpoint(), path)
    with np.load(path, allow_pickle=False) as archive:
        manifest = json.loads(str(archive["manifest"]))
        assert (manifest["format"], manifest["version"]) == ("minigrad-checkpoint", 1)
        arrays = [archive[name] for name in archive.files if name != "manifest"]
    assert any(a.dtype == np.int64 and a.shape == () and a == 7 for a in arrays)


def test_path_is_used_exactly_as_given(tmp_path):
    mg.save({"x": 1}, str(tmp_path / "model.ckpt"))
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert mg.load(str(tmp_path / "model.ckpt")) == {"x": 1}


def test_saving_again_replaces_the_file(tmp_path):
    mg.save({"x": 1}, tmp_path / "ckpt")
    mg.save({"x": 2}, tmp_path / "ckpt")
    assert mg.load(tmp_path / "ckpt") == {"x": 2}
    assert os.listdir(tmp_path) == ["ckpt"]


def test_loaded_tensors_own_their_data(tmp_path):
    mg.save({"w": mg.ones(3)}, tmp_path / "ckpt")
    w = mg.load(tmp_path / "ckpt")["w"]
    w.data += 1  # writable, not a view of something else
    assert w.tolist() == [2.0, 2.0, 2.0] and w.grad is None and w.is_leaf


def test_load_on_cpu(tmp_path):
    mg.save({"w": mg.ones(2, requires_grad=True)}, tmp_path / "ckpt")
    w = mg.load(tmp_path / "ckpt", device="cpu")["w"]
    assert w.device == "cpu" and isinstance(w.data, np.ndarray) and w.requires_grad
    with pytest.raises(ValueError, match="unknown device"):
        mg.load(tmp_path / "ckpt", device="tpu")


# ----- atomic writes -----------------------------------------------------------------
@pytest.fixture
def previous(tmp_path):
    """A directory holding one checkpoint written earlier, and its bytes."""
    path = tmp_path / "ckpt.npz"
    mg.save({"epoch": 1}, path)
    return path, path.read_bytes()


def assert_untouched(previous):
    path, content = previous
    assert path.read_bytes() == content
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_failed_rename_leaves_the_previous_file(previous, monkeypatch):
    def failing_replace(source, target):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        mg.save({"epoch": 2, "w": mg.ones(1000)}, previous[0])
    assert_untouched(previous)


def test_writer_failing_midway_leaves_the_previous_file(previous, monkeypatch):
    def failing_savez(file, **entries):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # even an interrupt cleans up
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(KeyboardInterrupt):
        mg.save({"epoch": 2}, previous[0])
    assert_untouched(previous)


def test_unsupported_value_writes_nothing(previous):
    with pytest.raises(TypeError, match="cannot store a set at model.foo"):
        mg.save({"model": {"foo": {1, 2}}}, previous[0])
    assert_untouched(previous)


@pytest.mark.parametrize("obj, message", [
    ({"model": {"foo": {1, 2}}}, "cannot store a set at model.foo"),
    ({"layers": [1, object()]}, r"cannot store a object at layers\[1\]"),
    ({"state": {0: {"buf": b"bytes"}}}, "cannot store a bytes at state.0.buf"),
    ({"a": np.array([None, 1])}, "dtype object at a"),
    ({"a": np.ma.masked_array([1, 2])}, "cannot store a MaskedArray at a"),
    ({"a": {(1, 2): 3}}, "dict key of type tuple"),
    ({"a": {np.int64(1): 3}}, "dict key of type int64"),
    ({1.5}, "cannot store a set at the top level"),
])
def test_unsupported_types_are_named_with_their_key_path(obj, message, tmp_path):
    with pytest.raises(TypeError, match=message):
        mg.save(obj, tmp_path / "ckpt")
    assert os.listdir(tmp_path) == []


def test_a_structure_containing_itself_is_refused(tmp_path):
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        mg.save(loop, tmp_path / "ckpt")
    shared = [1]
    mg.save({"a": shared, "b": shared}, tmp_path / "ckpt")  # shared, not cyclic: fine


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        mg.save({}, tmp_path / "absent" / "ckpt")


# ----- damaged and foreign files -----------------------------------------------------------
def write_npz(path, **entries):
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    path.write_bytes(buffer.getvalue())


def manifest(**fields):
    return np.array(json.dumps({"format": "minigrad-checkpoint", "version": 1,
                                "root": {"type": "dict", "items": []}, **fields}))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        mg.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], "truncated or damaged"),
    (lambda data: data[:10], "truncated or damaged"),
    (lambda data: b"", "not a zip"),
    (lambda data: np.random.default_rng(0).bytes(len(data)), "not a zip"),
    (lambda data: data[:3000] + bytes(b ^ 0xFF for b in data[3000:3010]) + data[3010:], "damaged"),
])
def test_damaged_files_give_a_value_error_naming_the_file(damage, message, tmp_path):
    path = tmp_path / "ckpt"
    mg.save({"w": mg.tensor(np.arange(1000.0))}, path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as error:
        mg.load(path)
    assert str(path) in str(error.value)


def test_any_flipped_byte_loads_correctly_or_gives_a_value_error(tmp_path):
    """Whatever zipfile raises on a damaged file reaches the user as one ValueError."""
    path = tmp_path / "ckpt"
    saved = {"w": mg.tensor(np.arange(20.0)), "n": (1, "x")}
    mg.save(saved, path)
    data = path.read_bytes()
    for position in range(0, len(data), 3):
        path.write_bytes(data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:])
        try:
            loaded = mg.load(path)
        except ValueError as error:
            assert str(path) in str(error)
        else:  # a byte the format does not check (a timestamp, padding) may change harmlessly
            assert loaded["n"] == (1, "x") and loaded["w"].tolist() == saved["w"].tolist()


@pytest.mark.parametrize("entries, message", [
    (dict(weights=np.ones(3)), "no 'manifest' entry"),
    (dict(manifest=np.array("{not json")), "not valid JSON"),
    (dict(manifest=np.arange(3)), "not a string"),
    (dict(manifest=np.array('{"format": "something-else", "root": null}')), "not a minigrad checkpoint"),
    (dict(manifest=manifest(version=99)), "format version 99"),
    (dict(manifest=manifest(root={"type": "ndarray", "entry": "array0"})), "entry 'array0'"),
    (dict(manifest=manifest(root={"type": "set", "items": []})), "unknown type 'set'"),
    (dict(manifest=manifest(root={"type": "dict"})), "malformed"),
    (dict(manifest=manifest(root=[1, 2])), "untagged list"),
])
def test_foreign_or_inconsistent_archives(entries, message, tmp_path):
    path = tmp_path / "foreign.npz"
    write_npz(path, **entries)
    with pytest.raises(ValueError, match=message) as error:
        mg.load(path)
    assert str(path) in str(error.value)


def test_a_single_npy_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match="not a zip"):
        mg.load(path)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_zip(path, members):
    """A zip of raw members {name: bytes}, written as np.savez writes them (stored, not compressed)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def root(node):
    return npy_bytes(manifest(root=node))


def test_an_entry_that_is_not_an_npy_file_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    write_zip(path, {"manifest.npy": b"hello, not an .npy file at all"})
    with pytest.raises(ValueError, match="entry 'manifest' is not an .npy array") as error:
        mg.load(path)
    assert str(path) in str(error.value)
    write_zip(path, {"manifest.npy": root({"type": "ndarray", "entry": "array0"}), "array0.npy": b"\x93NUMPY junk"})
    with pytest.raises(ValueError, match="entry 'array0' is not an .npy array"):
        mg.load(path)


@pytest.mark.parametrize("node, message", [
    ({"type": "dict", "items": "ab"}, "'items' = 'ab', not a list"),
    ({"type": "dict", "items": [[1, 2, 3]]}, r"not a \[key, value\] pair"),
    ({"type": "dict", "items": [[[1], 2]]}, "with a str or int key"),
    ({"type": "dict", "items": [[True, 2]]}, "with a str or int key"),
    ({"type": "dict", "items": [["a", [1]]]}, "untagged list"),
    ({"type": "list", "items": {"a": 1}}, "'items' = {'a': 1}, not a list"),
    ({"type": "ndarray"}, "'entry' = None, not a str"),
    ({"type": "ndarray", "entry": 5}, "'entry' = 5, not a str"),
    ({"type": "ndarray", "entry": "absent"}, "entry 'absent', which the file does not hold"),
    ({"type": "ndarray", "entry": "manifest"}, "the manifest's own entry"),
    ({"type": "tensor", "entry": "array0"}, "'requires_grad' = None, not a bool"),
    ({"type": "tensor", "entry": "array0", "requires_grad": "yes"}, "'requires_grad' = 'yes', not a bool"),
    ({"type": "tensor", "entry": "labels", "requires_grad": True}, "dtype int64 requires grad"),
    ({"type": "tensor", "entry": "text", "requires_grad": False}, "has dtype <U2, not one of numbers"),
    ({"type": "numpy_scalar", "entry": "array0"}, r"has shape \(3,\)"),
    ({"type": ["dict"], "items": []}, r"unknown type \['dict'\]"),
    ({"items": []}, "unknown type None"),
])
def test_malformed_manifest_items_give_a_value_error_naming_the_file(node, message, tmp_path):
    path = tmp_path / "ckpt.npz"
    write_zip(path, {"manifest.npy": root(node), "array0.npy": npy_bytes(np.ones(3)),
                     "labels.npy": npy_bytes(np.arange(3)), "text.npy": npy_bytes(np.array(["ab"]))})
    with pytest.raises(ValueError, match=message) as error:
        mg.load(path)
    assert str(path) in str(error.value)


def test_a_manifest_version_must_be_an_int(tmp_path):
    path = tmp_path / "ckpt.npz"
    write_zip(path, {"manifest.npy": npy_bytes(manifest(version=True))})
    with pytest.raises(ValueError, match="format version True"):
        mg.load(path)


def test_a_manifest_nested_deeper_than_python_can_follow(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    mg.save([], path)
    deep = node = {"type": "list", "items": []}
    for _ in range(10 * sys.getrecursionlimit()):  # as a JSON parser without a depth limit would return
        node["items"].append({"type": "list", "items": []})
        node = node["items"][0]
    monkeypatch.setattr(json, "loads", lambda text: {"format": "minigrad-checkpoint", "version": 1, "root": deep})
    with pytest.raises(ValueError, match="nested too deeply"):
        mg.load(path)


def npy_header(shape, descr="<f8"):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"shape": shape, "fortran_order": False, "descr": descr})
    return header.getvalue()


@pytest.mark.parametrize("shape, data, message", [
    ((10 ** 12,), b"\0" * 64, r"claims shape \(1000000000000,\) of float64 \(8000000000000 bytes\), "
                              "but holds 64 bytes"),
    ((2 ** 62, 2 ** 62), b"", "claims shape"),  # the product overflows 64 bits
    ((3,), b"\0" * 16, "holds 16 bytes"),       # truncated
    ((3,), b"\0" * 32, "holds 32 bytes"),       # too long
    ((-1,), b"\0" * 8, r"claims the shape \(-1,\)"),
], ids=["terabytes", "overflowing", "truncated", "too long", "negative"])
def test_an_npy_header_is_checked_against_the_entry_size_before_allocating(shape, data, message, tmp_path):
    """A header claiming terabytes is refused with a ValueError, not a MemoryError or an 8 TB allocation."""
    path = tmp_path / "ckpt.npz"
    write_zip(path, {"manifest.npy": root({"type": "ndarray", "entry": "array0"}),
                     "array0.npy": npy_header(shape) + data})
    with pytest.raises(ValueError, match=message) as error:
        mg.load(path)
    assert str(path) in str(error.value) and "'array0'" in str(error.value)


def test_zip_directory_sizes_that_the_file_cannot_hold_are_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    mg.save({"w": mg.tensor(np.arange(4.0))}, path)
    data = bytearray(path.read_bytes())
    # the central directory's record of array0.npy: its uncompressed size is at offset 24
    record = data.rindex(b"array0.npy") - 46
    assert data[record:record + 4] == b"PK\x01\x02"
    data[record + 24:record + 28] = (2 ** 32 - 16).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"entry 'array0' claims 4294967280 bytes \(\d+ compressed\) in a file of"):
        mg.load(path)


def test_a_compressed_npz_still_loads(tmp_path):
    path = tmp_path / "ckpt.npz"
    mg.save({"w": mg.tensor(np.zeros(10000))}, path)
    with np.load(path) as archive:
        entries = {name: archive[name] for name in archive.files}
    np.savez_compressed(path, **entries)
    assert os.path.getsize(path) < 10000
    assert mg.load(path)["w"].tolist() == [0.0] * 10000


# ----- where save and load may write and read ---------------------------------------------------
def test_save_to_an_empty_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="path is empty"):
        mg.save({}, "")
    assert os.listdir(tmp_path) == [] and not any(name.endswith(".tmp") for name in os.listdir(tmp_path.parent))


def test_save_to_a_directory_names_it_and_writes_nothing(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(IsADirectoryError, match="save: is a directory") as error:
        mg.save({}, tmp_path / "runs")
    assert error.value.filename == str(tmp_path / "runs") and ".tmp" not in str(error.value)
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(tmp_path / "runs") == []
    with pytest.raises(IsADirectoryError, match="load: is a directory"):
        mg.load(tmp_path / "runs")


def test_save_into_a_file_as_if_it_were_a_directory(previous):
    with pytest.raises(NotADirectoryError, match="not a directory") as error:
        mg.save({}, previous[0] / "ckpt")
    assert error.value.filename == str(previous[0])
    assert_untouched(previous)


def test_os_errors_name_the_users_path_not_the_temporary_file(previous, monkeypatch):
    def refused_replace(source, target):
        raise PermissionError(errno.EACCES, "Permission denied", source, target)
    monkeypatch.setattr(os, "replace", refused_replace)
    with pytest.raises(PermissionError, match="save: Permission denied") as error:
        mg.save({"epoch": 2}, previous[0])
    assert error.value.filename == str(previous[0]) and ".tmp" not in str(error.value)
    assert_untouched(previous)


def test_paths_of_the_wrong_type_and_bytes_paths(tmp_path):
    with pytest.raises(TypeError, match="save: path must be a str, bytes or os.PathLike, got int"):
        mg.save({}, 5)
    with pytest.raises(TypeError, match="load: path must be a str, bytes or os.PathLike, got NoneType"):
        mg.load(None)
    mg.save({"x": 1}, os.fsencode(tmp_path / "ckpt"))
    assert mg.load(os.fsencode(tmp_path / "ckpt")) == {"x": 1}
