"""mg.data: DataLoader batching and resume, the dataset readers on the shared real files and on
tiny files written here, where datasets are looked for, downloads, and every kind of damaged file."""
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.error
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import (CIFAR10, MNIST, DataLoader, Dataset, FashionMNIST, ImageFolder,
                           TensorDataset, cifar, find, mnist)

SHARED = "/work/shared/data"
SHARED_MNIST = os.path.join(SHARED, "mnist")
SHARED_CIFAR = os.path.join(SHARED, "cifar-10-batches-py")
SHARED_DOGS = os.path.join(SHARED, "dogs-vs-cats", "smallData")
FASHION_SYSTEM = "/usr/share/datasets/fashion-mnist"
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"{SHARED} is not on this machine")


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No test sees the user's $MINIGRAD_DATA or ~/.cache, or writes there."""
    monkeypatch.delenv("MINIGRAD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write_idx(path, array, code=0x08):
    """An IDX file (gzipped if ``path`` ends in .gz): 00 00, type code, ndim, big-endian sizes, data."""
    array = np.asarray(array)
    raw = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if str(path).endswith(".gz") else raw)
    return raw


def tiny_mnist(folder, n=5, prefix="train", gz=True, seed=0):
    """n random 28x28 digits and labels as IDX files in ``folder``; returns (pixels uint8, labels)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ending = ".gz" if gz else ""
    write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{ending}"), pixels)
    write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ending}"), labels)
    return pixels, labels


def write_pickle(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def tiny_cifar(folder, n=3, protocol=2):
    """Six batches of n images and a batches.meta, as the official pickles; returns the train rows."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        write_pickle(os.path.join(folder, name), {b"batch_label": name.encode(), b"data": rows[name],
                                                  b"labels": labels, b"filenames": [b"x.png"] * n}, protocol)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(os.path.join(folder, "batches.meta"),
                 {b"num_cases_per_batch": n, b"label_names": names, b"num_vis": 3072}, protocol)
    return rows


def serve(monkeypatch, files):
    """Make find.download fetch ``files[url]`` (bytes) instead of using the network."""
    def fake_urlopen(url, timeout=None):
        if url not in files:
            raise urllib.error.URLError(f"no route to {url}")
        return io.BytesIO(files[url])
    monkeypatch.setattr(find, "urlopen", fake_urlopen)


# ---------------------------------------------------------------- Dataset, TensorDataset, DataLoader

def test_tensor_dataset_items_lengths_and_tensors():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    dataset = TensorDataset(mg.tensor(x), y)
    assert len(dataset) == 10 and type(dataset.arrays[0]) is np.ndarray
    np.testing.assert_array_equal(dataset[3][0], x[3])
    assert dataset[3][1] == 3
    with pytest.raises(ValueError, match=r"different lengths.*\[10, 9\]"):
        TensorDataset(x, y[:9])
    with pytest.raises(ValueError, match="axis 0"):
        TensorDataset(np.float32(1.0))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(NotImplementedError, match="__len__"):
        len(Dataset())


def test_batches_in_order_with_a_smaller_last_batch_or_dropped():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert batches[0][0].dtype == np.float32 and batches[0][0].shape == (4, 1)
    dropped = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]
    assert len(DataLoader(TensorDataset(x, y), batch_size=20, drop_last=True)) == 0
    batches[0][0][:] = -1  # a batch is a copy: writing to it leaves the dataset alone
    assert x.min() == 0


def test_shuffle_is_reproducible_per_seed_and_new_each_epoch():
    dataset = TensorDataset(np.arange(100))
    first = DataLoader(dataset, batch_size=7, shuffle=True, seed=3)
    epochs = [np.concatenate([b[0] for b in first]) for _ in range(3)]
    assert all(sorted(epoch) == list(range(100)) for epoch in epochs)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[0], np.arange(100))
    again = DataLoader(dataset, batch_size=7, shuffle=True, seed=3)
    for epoch in epochs:
        np.testing.assert_array_equal(np.concatenate([b[0] for b in again]), epoch)
    other = DataLoader(dataset, batch_size=7, shuffle=True, seed=4)
    assert not np.array_equal(np.concatenate([b[0] for b in other]), epochs[0])


@pytest.mark.parametrize("stop_after", [0, 5, 15, 22])  # batches of 15 per epoch: start, mid, end, mid of the 2nd
def test_state_dict_resumes_bit_exactly(tmp_path, stop_after):
    dataset = TensorDataset(np.arange(60), np.arange(60) * 10)
    reference = DataLoader(dataset, batch_size=4, shuffle=True, seed=0)
    expected = [b[0] for _ in range(3) for b in reference]

    interrupted = DataLoader(dataset, batch_size=4, shuffle=True, seed=0)
    seen = []
    while len(seen) < stop_after:
        for batch in interrupted:
            seen.append(batch[0])
            if len(seen) == stop_after:
                break
    mg.save({"loader": interrupted.state_dict()}, tmp_path / "checkpoint")

    resumed = DataLoader(dataset, batch_size=4, shuffle=True, seed=123)
    resumed.load_state_dict(mg.load(tmp_path / "checkpoint")["loader"])
    assert resumed.state_dict() == interrupted.state_dict()
    while len(seen) < len(expected):
        seen.extend(b[0] for b in resumed)
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        np.testing.assert_array_equal(got, want)


def test_generic_datasets_are_stacked_item_by_item():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((2, 2), i * i, dtype=np.float32), i

    x, y = next(iter(DataLoader(Squares(), batch_size=3)))
    assert x.shape == (3, 2, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, [0, 1, 2])
    np.testing.assert_array_equal(x[2], np.full((2, 2), 4))

    class Plain(Squares):
        def __getitem__(self, i):
            return np.array([i, -i])

    assert [b.shape for b in DataLoader(Plain(), batch_size=2)] == [(2, 2), (2, 2), (1, 2)]


def test_loader_arguments_are_checked():
    dataset = TensorDataset(np.arange(10))
    for bad in [0, -1, 2.5, True, "4", None]:
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            DataLoader(dataset, batch_size=bad)
    with pytest.raises(TypeError, match="__len__ and __getitem__"):
        DataLoader([1, 2, 3].__iter__(), batch_size=2)
    loader = DataLoader(dataset, batch_size=3)
    with pytest.raises(ValueError, match="'generator' and 'batches_done'"):
        loader.load_state_dict({"seed": 1})
    with pytest.raises(ValueError, match="batches_done=9 but an epoch has 4 batches"):
        loader.load_state_dict({"generator": loader.generator.bit_generator.state, "batches_done": 9})


def test_import_minigrad_does_not_import_pillow():
    code = "import sys, minigrad; assert 'PIL' not in sys.modules, 'Pillow was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# ---------------------------------------------------------------- MNIST and Fashion-MNIST

@pytest.fixture(scope="module")
def shared_mnist():
    if not os.path.isdir(SHARED_MNIST):
        pytest.skip(f"{SHARED_MNIST} is not on this machine")
    return MNIST(SHARED_MNIST, train=True), MNIST(SHARED, train=False)


def test_shared_mnist_counts_ranges_and_a_pixel(shared_mnist):
    train, test = shared_mnist
    assert (len(train), len(test)) == (14262, 10000)  # from the headers: the shared train set is a prefix
    for dataset in (train, test):
        assert dataset.images.dtype == np.float32 and dataset.labels.dtype == np.int64
        assert dataset.images.shape == (len(dataset), 1, 28, 28) and dataset.labels.shape == (len(dataset),)
        assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
        assert set(np.unique(dataset.labels)) == set(range(10))
        assert dataset.classes == [str(d) for d in range(10)]
    with gzip.open(os.path.join(SHARED_MNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(SHARED_MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    assert test.images[1234, 0, 14, 14] == np.float32(raw[1234, 14, 14]) / np.float32(255)
    np.testing.assert_array_equal(test.images[:, 0] * 255, raw)  # x / 255 * 255 is exact in float32
    assert labels[:3].tolist() == [7, 2, 1] and test.labels[1234] == labels[1234]
    image, label = test[0]
    assert image.shape == (1, 28, 28) and label == 7


def test_mnist_epoch_with_a_shuffled_loader(shared_mnist):
    train = shared_mnist[0]
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0)
    counts = np.zeros(10, dtype=np.int64)
    for images, labels in loader:
        assert images.dtype == np.float32 and labels.dtype == np.int64 and images.shape[1:] == (1, 28, 28)
        counts += np.bincount(labels, minlength=10)
    assert len(loader) == 223 and len(images) == 14262 - 222 * 64
    np.testing.assert_array_equal(counts, np.bincount(train.labels))


def test_fashion_mnist_from_the_debian_package():
    if not os.path.isdir(FASHION_SYSTEM):
        pytest.skip(f"{FASHION_SYSTEM} is absent (apt-get install dataset-fashion-mnist)")
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    assert (len(train), len(test)) == (60000, 10000) and train.folder == FASHION_SYSTEM
    assert np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.shape == (60000, 1, 28, 28) and 0 <= train.images.min() < train.images.max() <= 1
    assert test.classes[9] == "Ankle boot" and test.labels[0] == 9  # the first test image is an ankle boot


@pytest.mark.parametrize("gz", [True, False])
def test_tiny_idx_files_gzipped_or_not(tmp_path, gz):
    pixels, labels = tiny_mnist(tmp_path / "mnist", n=7, prefix="t10k", gz=gz)
    for root in (tmp_path / "mnist", tmp_path):  # the folder of the files, or its parent
        dataset = MNIST(root, train=False)
        assert len(dataset) == 7 and dataset.folder == str(tmp_path / "mnist")
        np.testing.assert_array_equal(dataset.images[:, 0], pixels.astype(np.float32) / 255)
        np.testing.assert_array_equal(dataset.labels, labels)


def test_search_order_root_then_minigrad_data_then_cache(tmp_path, monkeypatch):
    tiny_mnist(tmp_path / "home" / ".cache" / "minigrad" / "mnist", n=3)
    assert len(MNIST()) == 3
    tiny_mnist(tmp_path / "env" / "mnist", n=4)
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "env"))
    assert len(MNIST()) == 4
    tiny_mnist(tmp_path / "mine", n=5)
    assert len(MNIST(root=tmp_path / "mine")) == 5
    with pytest.raises(FileNotFoundError):  # an explicit root is the only place looked
        MNIST(root=tmp_path / "typo")


def test_not_found_says_where_it_looked_and_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "env"))
    os.makedirs(tmp_path / "env" / "mnist")
    write_idx(tmp_path / "env" / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as error:
        MNIST()
    message = str(error.value)
    assert f"{tmp_path}/env/mnist (lacks train-labels-idx1-ubyte[.gz])" in message
    assert f"{tmp_path}/home/.cache/minigrad/mnist (no such folder)" in message
    assert "download=True" in message and "MINIGRAD_DATA" in message and "root=" in message

    monkeypatch.delenv("MINIGRAD_DATA")
    monkeypatch.setattr(FashionMNIST, "system_places", (str(tmp_path / "usr-share"),))
    with pytest.raises(FileNotFoundError) as error:
        FashionMNIST(train=False)
    message = str(error.value)
    assert "$MINIGRAD_DATA is not set" in message and f"{tmp_path}/usr-share (no such folder)" in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message


def corrupt_idx_cases():
    """(name, files to write as {name: bytes or array}, what the message must say)."""
    images = np.zeros((4, 28, 28), np.uint8)
    header = bytes([0, 0, 8, 3]) + np.array([4, 28, 28], ">u4").tobytes()
    return [
        ("bad magic", {"images": b"\x1f\x00\x08\x03" + header[4:] + images.tobytes()}, "bad magic number"),
        ("truncated", {"images": header + images.tobytes()[:-10]}, r"header says shape \(4, 28, 28\)"),
        ("extra bytes", {"images": header + images.tobytes() + b"\0"}, "3137 bytes of data"),
        ("truncated header", {"images": bytes([0, 0, 8, 3, 0, 0])}, "truncated IDX header"),
        ("empty", {"images": b""}, "bad magic number"),
        ("count mismatch", {"labels": np.zeros(3, np.uint8)}, "has 4 images but .* has 3 labels"),
        ("label out of range", {"labels": np.array([0, 1, 10, 2], np.uint8)}, "label 10 is not a class"),
        ("images not uint8", {"images": (np.zeros((4, 28, 28), ">i4"), 0x0C)}, "expected uint8 images"),
        ("labels not 1-d", {"labels": np.zeros((4, 1), np.uint8)}, r"expected uint8 labels \(N,\)"),
    ]


@pytest.mark.parametrize("name, files, says", corrupt_idx_cases(), ids=[c[0] for c in corrupt_idx_cases()])
def test_corrupt_idx_files_raise_naming_the_file(tmp_path, name, files, says):
    tiny_mnist(tmp_path, n=4, gz=False)
    for which, content in files.items():
        path = tmp_path / f"train-{which}-idx{3 if which == 'images' else 1}-ubyte"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            array, code = content if isinstance(content, tuple) else (content, 0x08)
            write_idx(path, array, code)
    with pytest.raises(ValueError, match=says) as error:
        MNIST(tmp_path)
    assert str(tmp_path / "train-") in str(error.value)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sizes, data, says", [
    ([2 ** 32 - 1] * 4, b"", r"shape \(4294967295, 4294967295, 4294967295, 4294967295\), .* overflows 64 bits"),
    ([2 ** 31, 2 ** 31], b"\0" * 100, r"header says shape \(2147483648, 2147483648\) \(4611686018427387904 bytes"),
    ([3, 4], b"\0" * 11, "holds 11 bytes of data"),
    ([3, 4], b"\0" * 13, "holds (13|more than 12) bytes of data"),
    ([0, 4], b"", None),
    ([3, 4], b"\0" * 12, None),
], ids=["overflowing", "exabytes", "truncated", "too long", "empty", "fine"])
def test_idx_header_sizes_are_checked_before_allocating(tmp_path, gz, sizes, data, says):
    """A header claiming exabytes is refused with a ValueError naming the file, never a MemoryError."""
    path = tmp_path / ("labels.idx" + (".gz" if gz else ""))
    raw = bytes([0, 0, 0x08, len(sizes)]) + np.array(sizes, ">u4").tobytes() + data
    path.write_bytes(gzip.compress(raw) if gz else raw)
    if says is None:
        array = mnist.read_idx(path)
        assert array.shape == tuple(sizes) and array.dtype == np.uint8 and array.flags.writeable
        return
    if gz and sizes == [2 ** 31, 2 ** 31]:
        says = r"\(4611686018427387904 bytes of data\), more than a gzip file of \d+ bytes can hold"
    with pytest.raises(ValueError, match=says) as error:
        mnist.read_idx(path)
    assert str(path) in str(error.value)


def test_idx_of_other_element_types_reads_big_endian(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 1e30]], ">f4")
    write_idx(tmp_path / "floats.idx", values, code=0x0D)
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "floats.idx"), values)


@needs_shared
@pytest.mark.parametrize("damage", ["not gzip", "truncated gzip"])
def test_bad_gzip_raises_naming_the_file(tmp_path, damage):
    shutil.copy(os.path.join(SHARED_MNIST, "t10k-labels-idx1-ubyte.gz"), tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    if damage == "not gzip":
        path.write_bytes(b"this is not a gzip file")
    else:
        path.write_bytes(open(os.path.join(SHARED_MNIST, "t10k-images-idx3-ubyte.gz"), "rb").read()[:100000])
    with pytest.raises(ValueError, match="not a valid gzip file") as error:
        MNIST(tmp_path, train=False)
    assert str(path) in str(error.value)


@needs_shared
def test_download_checks_the_published_md5(tmp_path, monkeypatch):
    """The shared t10k files are byte-identical to the official ones, so the real MD5 table must accept them."""
    files = {MNIST.url + name: open(os.path.join(SHARED_MNIST, name), "rb").read()
             for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]}
    serve(monkeypatch, files)
    dataset = MNIST(train=False, download=True)
    cache = tmp_path / "home" / ".cache" / "minigrad" / "mnist"
    assert len(dataset) == 10000 and dataset.folder == str(cache)
    assert sorted(os.listdir(cache)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert len(MNIST(train=False)) == 10000  # found in the cache now, no download asked for

    serve(monkeypatch, {})
    with pytest.raises(OSError, match=r"could not download https://ossci.*t10k-images.*no route"):
        MNIST(tmp_path / "elsewhere", train=False, download=True)
    assert os.listdir(tmp_path / "elsewhere" / "mnist") == []


def test_download_with_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    pixels_file = tmp_path / "served.gz"
    write_idx(pixels_file, np.zeros((2, 28, 28), np.uint8))
    serve(monkeypatch, {FashionMNIST.url + "t10k-images-idx3-ubyte.gz": pixels_file.read_bytes()})
    with pytest.raises(ValueError, match="failed its checksum.*published bef4ecab320f06d8554ea6380940ec79"):
        FashionMNIST(tmp_path / "data", train=False, download=True)
    assert os.listdir(tmp_path / "data" / "fashion-mnist") == []


def test_download_into_root_with_patched_checksums(tmp_path, monkeypatch):
    tiny_mnist(tmp_path / "publisher", n=6)
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    served = {name: (tmp_path / "publisher" / name).read_bytes() for name in names}
    serve(monkeypatch, {FashionMNIST.url + name: data for name, data in served.items()})
    checksums = {name: hashlib.md5(data).hexdigest() for name, data in served.items()}
    monkeypatch.setattr(FashionMNIST, "md5", checksums)
    monkeypatch.setattr(FashionMNIST, "system_places", ())
    dataset = FashionMNIST(tmp_path / "data", download=True)
    assert len(dataset) == 6 and dataset.folder == str(tmp_path / "data" / "fashion-mnist")
    assert sorted(os.listdir(dataset.folder)) == names


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A local HTTP server for ``tmp_path/www``: returns (folder, base URL); real urlopen, real Content-Length."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log on stderr, where the progress bar goes
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_over_http_shows_a_sized_progress_bar_and_checks_the_md5(tmp_path, http_folder, capsys):
    folder, base = http_folder
    data = bytes(range(256)) * 12  # 3 KiB
    (folder / "blob.bin").write_bytes(data)
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "blob.bin"
    find.download(base + "blob.bin", target, hashlib.md5(data).hexdigest())
    assert target.read_bytes() == data and os.listdir(tmp_path / "out") == ["blob.bin"]
    err = capsys.readouterr().err
    assert "blob.bin: 100%" in err and "3.00k/3.00k" in err  # total from Content-Length: 3072 bytes

    target.unlink()
    with pytest.raises(ValueError, match=r"download of http://127\.0\.0\.1:\d+/blob\.bin failed its checksum.*"
                                         r"published 0{32}; nothing was saved"):
        find.download(base + "blob.bin", target, "0" * 32)
    assert os.listdir(tmp_path / "out") == []  # no .part file and no blob.bin left behind
    with pytest.raises(OSError, match=r"could not download http://127.*/absent\.bin to .*404"):
        find.download(base + "absent.bin", target, "0" * 32)
    assert os.listdir(tmp_path / "out") == []


def test_download_progress_can_be_off_and_needs_no_tqdm(tmp_path, monkeypatch, capsys):
    source = tmp_path / "source.bin"
    source.write_bytes(b"minigrad" * 100)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    find.download(source.as_uri(), tmp_path / "a.bin", md5, progress=False)  # file:// URLs work too
    assert (tmp_path / "a.bin").read_bytes() == source.read_bytes() and capsys.readouterr().err == ""

    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed: import tqdm fails
    find.download(source.as_uri(), tmp_path / "b.bin", md5)
    assert (tmp_path / "b.bin").read_bytes() == source.read_bytes() and capsys.readouterr().err == ""

    monkeypatch.delitem(sys.modules, "tqdm")
    serve(monkeypatch, {"https://example.org/c.bin": source.read_bytes()})  # a response without headers
    find.download("https://example.org/c.bin", tmp_path / "c.bin", md5)
    err = capsys.readouterr().err
    assert "c.bin: 800B" in err and "%" not in err  # no Content-Length: a byte count, no percentage


def test_mnist_download_from_a_file_url_shows_progress(tmp_path, monkeypatch, capsys):
    """MNIST(download=True) goes through find.download: its url and md5 table are all that name the publisher."""
    pixels, labels = tiny_mnist(tmp_path / "publisher", n=4, prefix="t10k")
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    monkeypatch.setattr(MNIST, "url", (tmp_path / "publisher").as_uri() + "/")
    monkeypatch.setattr(MNIST, "md5", {name: hashlib.md5((tmp_path / "publisher" / name).read_bytes()).hexdigest()
                                       for name in names})
    dataset = MNIST(root=tmp_path / "data", train=False, download=True)
    assert len(dataset) == 4 and dataset.folder == str(tmp_path / "data" / "mnist") and not dataset.is_sample
    np.testing.assert_array_equal(dataset.labels, labels)
    np.testing.assert_array_equal(dataset.images[:, 0] * 255, pixels)
    assert sorted(os.listdir(dataset.folder)) == names
    err = capsys.readouterr().err
    assert all(f"{name}: 100%" in err for name in names)

    monkeypatch.setitem(MNIST.md5, names[0], "0" * 32)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz failed its checksum"):
        MNIST(root=tmp_path / "other", train=False, download=True)
    assert os.listdir(tmp_path / "other" / "mnist") == []


# ---------------------------------------------------------------- the MNIST sample bundled with the package

SAMPLE_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


@pytest.fixture(scope="module")
def sample():
    return MNIST.sample(train=True), MNIST.sample(train=False)


def test_sample_counts_shapes_dtypes_and_labels(sample):
    train, test = sample
    assert (len(train), len(test)) == (10000, 2000)
    for dataset in (train, test):
        assert dataset.is_sample and dataset.folder == MNIST.SAMPLE_FOLDER and isinstance(dataset, MNIST)
        assert dataset.images.dtype == np.float32 and dataset.images.shape == (len(dataset), 1, 28, 28)
        assert dataset.labels.dtype == np.int64 and dataset.labels.shape == (len(dataset),)
        assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
        assert set(np.unique(dataset.labels).tolist()) == set(range(10))
        assert dataset.classes == [str(d) for d in range(10)]
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the official files' first labels
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(train.labels).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    image, label = test[0]
    assert image.shape == (1, 28, 28) and label == 7
    assert MNIST.is_sample is False and len(DataLoader(test, batch_size=500)) == 4


@needs_shared
def test_sample_is_a_prefix_of_the_official_files(sample, shared_mnist):
    for name in SAMPLE_FILES:
        bundled = mnist.read_idx(os.path.join(MNIST.SAMPLE_FOLDER, name))
        full = mnist.read_idx(os.path.join(SHARED_MNIST, name))
        assert len(bundled) == (10000 if name.startswith("train") else 2000) < len(full)
        np.testing.assert_array_equal(bundled, full[:len(bundled)])
        with gzip.open(os.path.join(MNIST.SAMPLE_FOLDER, name)) as f, gzip.open(os.path.join(SHARED_MNIST, name)) as g:
            raw, official = f.read(), g.read()
        header = 16 if "images" in name else 8  # only the count, bytes 4-7, differs
        assert raw[:4] == official[:4] and raw[8:header] == official[8:header]
        assert raw[header:] == official[header:len(raw)]
    for dataset, full in zip(sample, shared_mnist):
        np.testing.assert_array_equal(dataset.images, full.images[:len(dataset)])
        np.testing.assert_array_equal(dataset.labels, full.labels[:len(dataset)])
        assert not full.is_sample


def test_sample_files_match_the_md5s_in_their_readme():
    with open(os.path.join(MNIST.SAMPLE_FOLDER, "README.md")) as f:
        readme = f.read()
    assert "CC BY-SA 3.0" in readme and "http://yann.lecun.com/exdb/mnist/" in readme
    for name in SAMPLE_FILES:
        row = re.search(rf"^\| `{re.escape(name)}` \|.*\| `([0-9a-f]{{32}})` \| `([0-9a-f]{{32}})` \|$", readme, re.M)
        assert row, f"README.md has no row for {name}"
        with open(os.path.join(MNIST.SAMPLE_FOLDER, name), "rb") as f:
            data = f.read()
        assert (hashlib.md5(data).hexdigest(), hashlib.md5(gzip.decompress(data)).hexdigest()) == row.groups()
        assert f"| {len(data):,} |" in row.group(0)


def test_fashion_mnist_has_no_sample_and_a_missing_sample_says_so(tmp_path, monkeypatch):
    assert FashionMNIST.SAMPLE_FOLDER is None and FashionMNIST.is_sample is False
    with pytest.raises(FileNotFoundError, match=r"FashionMNIST\.sample\(\): minigrad bundles no sample of "
                                                r"fashion-mnist \(only MNIST ships one\).*download=True"):
        FashionMNIST.sample()
    tiny_mnist(tmp_path / "broken", n=2, prefix="train")  # training files only: the test half is "missing"
    monkeypatch.setattr(MNIST, "SAMPLE_FOLDER", str(tmp_path / "broken"))
    assert len(MNIST.sample()) == 2
    with pytest.raises(FileNotFoundError, match=r"MNIST\.sample\(\): the bundled sample in .*broken lacks "
                                                r"t10k-images-idx3-ubyte\[\.gz\], t10k-labels.*reinstall minigrad"):
        MNIST.sample(train=False)


def test_sample_is_in_the_wheel_and_found_from_an_installed_package(tmp_path):
    """A non-editable wheel carries the sample (pyproject's package data), and MNIST.sample() finds it there."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = tmp_path / "source"  # built from a copy, so that the build writes nothing into the checkout
    source.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(os.path.join(repo, name), source)
    for name in ["minigrad", "models"]:
        shutil.copytree(os.path.join(repo, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "-w", str(tmp_path / "wheel"), "--no-deps",
                    "--no-build-isolation", "-q"], cwd=source, check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("minigrad-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")  # a pure-Python wheel installs by unpacking
        shipped = {name for name in archive.namelist() if "/samples/" in name}
    assert shipped == {f"minigrad/data/samples/mnist/{name}" for name in SAMPLE_FILES + ["README.md"]}
    code = ("import minigrad.data as d; s = d.MNIST.sample(train=False); "
            "print(d.__file__, d.MNIST.SAMPLE_FOLDER, len(s), s.is_sample, s.labels[:3].tolist())")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split(" ", 2)
    site = str(tmp_path / "site")
    assert out[0] == os.path.join(site, "minigrad", "data", "__init__.py")  # the installed copy, not the checkout
    assert out[1] == os.path.join(site, "minigrad", "data", "samples", "mnist")
    assert out[2].strip() == "2000 True [7, 2, 1]"


# ---------------------------------------------------------------- CIFAR-10

@needs_shared
def test_shared_cifar_counts_ranges_and_a_pixel():
    train, test = CIFAR10(SHARED, train=True), CIFAR10(SHARED_CIFAR, train=False)
    assert (len(train), len(test)) == (4660, 846)
    for dataset in (train, test):
        assert dataset.images.shape == (len(dataset), 3, 32, 32) and dataset.images.dtype == np.float32
        assert dataset.labels.dtype == np.int64 and set(np.unique(dataset.labels)) == set(range(10))
        assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer",
                             "dog", "frog", "horse", "ship", "truck"]
    with open(os.path.join(SHARED_CIFAR, "data_batch_2"), "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    row, n = 17, len(batch[b"data"])  # image 17 of the second batch; the first batch holds n images
    red_top_left, blue_bottom_right = batch[b"data"][row][0], batch[b"data"][row][3071]
    assert train.images[n + row, 0, 0, 0] == np.float32(red_top_left) / np.float32(255)
    assert train.images[n + row, 2, 31, 31] == np.float32(blue_bottom_right) / np.float32(255)
    assert train.labels[n + row] == batch[b"labels"][row]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_tiny_cifar_pickles(tmp_path, protocol):
    rows = tiny_cifar(tmp_path / "cifar-10-batches-py", n=3, protocol=protocol)
    train, test = CIFAR10(tmp_path), CIFAR10(tmp_path, train=False)
    assert (len(train), len(test)) == (15, 3)
    expected = np.concatenate([rows[f"data_batch_{i}"] for i in range(1, 6)]).reshape(15, 3, 32, 32)
    np.testing.assert_array_equal(train.images * 255, expected)
    np.testing.assert_array_equal(test.images[2, 1].ravel() * 255, rows["test_batch"][2, 1024:2048])


def test_cifar_written_by_numpy_1_loads(tmp_path):
    """The official batches name numpy.core.multiarray (NumPy 1), which NumPy 2 renamed numpy._core."""
    tiny_cifar(tmp_path, n=2)
    path = tmp_path / "test_batch"
    old = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    path.write_bytes(old)
    assert len(CIFAR10(tmp_path, train=False)) == 2


class Hostile:
    def __reduce__(self):
        return (print, ("this must never run",))


def corrupt_cifar_cases():
    good = np.zeros((3, 3072), np.uint8)
    return [
        ("not a pickle", b"\x89PNG not a pickle at all", "not a readable CIFAR python batch"),
        ("truncated", pickle.dumps({b"data": good, b"labels": [0, 1, 2]}, 2)[:500], "not a readable CIFAR"),
        ("empty", b"", "not a readable CIFAR python batch"),
        ("a list", [1, 2, 3], r"expected a dict with keys \[b'data', b'labels'\], found list"),
        ("no labels", {b"data": good}, r"expected a dict with keys.*found \[b'data'\]"),
        ("wrong width", {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, r"uint8 array \(n, 3072\)"),
        ("float data", {b"data": good.astype(np.float32), b"labels": [0, 1, 2]}, "got float32"),
        ("label count", {b"data": good, b"labels": [0, 1]}, "3 images but b'labels'"),
        ("label range", {b"data": good, b"labels": [0, 1, 12]}, r"labels should be 0..9, found 0..12"),
        ("hostile", {b"data": good, b"labels": [0, 1, 2], b"x": Hostile()},
         r"refusing to load (__builtin__|builtins)\.print"),
    ]


@pytest.mark.parametrize("name, content, says", corrupt_cifar_cases(), ids=[c[0] for c in corrupt_cifar_cases()])
def test_corrupt_cifar_batches_raise_naming_the_file(tmp_path, capsys, name, content, says):
    tiny_cifar(tmp_path, n=3)
    path = tmp_path / "test_batch"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_pickle(path, content)
    with pytest.raises(ValueError, match=says) as error:
        CIFAR10(tmp_path, train=False)
    assert str(path) in str(error.value)
    assert "must never run" not in capsys.readouterr().out


def test_cifar_meta_and_missing_files(tmp_path):
    tiny_cifar(tmp_path, n=2)
    write_pickle(tmp_path / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(ValueError, match="batches.meta: b'label_names' should list 10 names"):
        CIFAR10(tmp_path, train=False)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} \(lacks data_batch_3\)"):
        CIFAR10(tmp_path)


def cifar_tarball(tmp_path, extra=None):
    """A gzipped tar of a tiny cifar-10-batches-py folder (plus an ``extra`` member) and its md5."""
    tiny_cifar(tmp_path / "publisher" / "cifar-10-batches-py", n=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "publisher" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"evil") if extra.isfile() else None)
    return buffer.getvalue()


def test_cifar_download_unpacks_the_tarball(tmp_path, monkeypatch, capsys):
    archive = cifar_tarball(tmp_path)
    serve(monkeypatch, {cifar.URL: archive})
    monkeypatch.setattr(cifar, "MD5", hashlib.md5(archive).hexdigest())
    dataset = CIFAR10(train=False, download=True)
    assert "cifar-10-python.tar.gz: " in capsys.readouterr().err  # find.download's progress bar
    cache = tmp_path / "home" / ".cache" / "minigrad"
    assert len(dataset) == 2 and dataset.folder == str(cache / "cifar-10-batches-py")
    assert os.listdir(cache) == ["cifar-10-batches-py"]  # the tarball is gone, nothing half-written is left
    assert len(os.listdir(cache / "cifar-10-batches-py")) == 7

    monkeypatch.setattr(cifar, "MD5", "0" * 32)
    with pytest.raises(ValueError, match="failed its checksum"):
        CIFAR10(tmp_path / "other", download=True)
    assert os.listdir(tmp_path / "other") == ["cifar-10-batches-py"]
    assert os.listdir(tmp_path / "other" / "cifar-10-batches-py") == []


@pytest.mark.parametrize("member, says", [("../escape", "outside cifar-10-batches-py"),
                                          ("/etc/escape", "outside"),
                                          ("cifar-10-batches-py/link", "not a plain file")])
def test_cifar_tarball_members_that_could_escape_are_refused(tmp_path, monkeypatch, member, says):
    extra = tarfile.TarInfo(member)
    if member.endswith("link"):
        extra.type, extra.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        extra.size = 4
    archive = cifar_tarball(tmp_path, extra)
    serve(monkeypatch, {cifar.URL: archive})
    monkeypatch.setattr(cifar, "MD5", hashlib.md5(archive).hexdigest())
    with pytest.raises(ValueError, match=f"refusing member .*{says}"):
        CIFAR10(tmp_path / "data", download=True)
    assert not os.path.exists(tmp_path / "escape") and not os.path.exists(tmp_path / "data" / "escape")
    assert not os.path.exists(tmp_path / "data" / "cifar-10-python.tar.gz")


# ---------------------------------------------------------------- ImageFolder

def make_image_folder(root):
    """Two classes (written in reverse order, to check sorting), PNG and JPEG, grey and RGBA, one broken file."""
    Image = pytest.importorskip("PIL.Image")
    os.makedirs(root / "zebra" / "nested")
    os.makedirs(root / "ant")
    os.makedirs(root / ".ipynb_checkpoints")
    red = np.zeros((6, 8, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(root / "zebra" / "b_red.png")
    gradient = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(gradient, mode="L").save(root / "zebra" / "nested" / "c_grey.PNG")
    Image.fromarray(np.full((4, 4, 4), 200, np.uint8), mode="RGBA").save(root / "ant" / "rgba.png")
    Image.fromarray(red).save(root / "ant" / "photo.jpg", quality=95)
    (root / "zebra" / "a_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "zebra" / "notes.txt").write_text("not an image, ignored as Keras ignores it")
    Image.fromarray(red).save(root / ".ipynb_checkpoints" / "hidden.png")
    return red, gradient


def test_image_folder_classes_values_and_one_warning_for_unreadable_files(tmp_path):
    red, gradient = make_image_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\).*a_broken\.jpg") as record:
        dataset = ImageFolder(tmp_path, size=(3, 4))
    assert len(record) == 1
    assert dataset.classes == ["ant", "zebra"] and dataset.labels.tolist() == [0, 0, 1, 1]
    assert [os.path.basename(f) for f in dataset.files] == ["photo.jpg", "rgba.png", "b_red.png", "c_grey.PNG"]
    assert dataset.images.shape == (4, 3, 3, 4) and dataset.images.dtype == np.float32
    assert dataset.labels.dtype == np.int64 and len(dataset) == 4
    red_planes = np.array([1, 0, 0], np.float32)[:, None, None] * np.ones((3, 4))
    np.testing.assert_array_equal(dataset.images[2], red_planes)
    np.testing.assert_array_equal(dataset.images[1], np.float32(200) * np.float32(1 / 255))  # RGBA: alpha dropped
    grey = dataset.images[3] * 255  # a grey image becomes three equal channels of its own values
    np.testing.assert_array_equal(grey[0], grey[2])
    assert set(np.round(grey.ravel()).astype(int)) <= set(gradient.ravel().tolist())
    assert 0 <= dataset.images.min() and dataset.images.max() <= 1


def test_image_folder_matches_keras_load_img_nearest_and_rescale(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    make_image_folder(tmp_path)
    with pytest.warns(UserWarning):
        dataset = ImageFolder(tmp_path, size=(5, 3))
    for i, path in enumerate(dataset.files):  # keras.utils.load_img + img_to_array, then x *= 1/255
        with Image.open(path) as image:
            keras = np.asarray(image.convert("RGB").resize((3, 5), Image.NEAREST), np.float32)
        keras *= 1 / 255
        np.testing.assert_array_equal(dataset.images[i], keras.transpose(2, 0, 1))
    with pytest.warns(UserWarning):
        bilinear = ImageFolder(tmp_path, size=(5, 3), interpolation="bilinear")
    assert not np.array_equal(bilinear.images[3], dataset.images[3])


def test_image_folder_errors(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "missing", size=(8, 8))
    with pytest.raises(ValueError, match="no subfolders"):
        ImageFolder(tmp_path, size=(8, 8))
    os.makedirs(tmp_path / "cats")
    with pytest.raises(FileNotFoundError, match=rf"found no image files .* in the class folder\(s\) {tmp_path}/cats;"):
        ImageFolder(tmp_path, size=(8, 8))
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match="broken.png"), pytest.raises(ValueError, match="none of the 1 images"):
        ImageFolder(tmp_path, size=(8, 8))
    Image.new("RGB", (4, 4)).save(tmp_path / "cats" / "ok.png")
    for bad in [(8,), (0, 8), (8.0, 8), 8, (True, 8)]:
        with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
            ImageFolder(tmp_path, size=bad)
    with pytest.raises(ValueError, match="unknown interpolation 'cubic-ish'"):
        ImageFolder(tmp_path, size=(8, 8), interpolation="cubic-ish")


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    """As torchvision does: an empty folder would be a class without examples, shifting the labels after it."""
    Image = pytest.importorskip("PIL.Image")
    for name in ["ant", "bee", "cat", "dog"]:
        os.makedirs(tmp_path / name)
    for name in ["ant", "dog"]:
        Image.new("RGB", (4, 4)).save(tmp_path / name / "ok.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=rf"in the class folder\(s\) {tmp_path}/bee, {tmp_path}/cat; "
                                               rf"every subfolder of {tmp_path} is a class"):
        ImageFolder(tmp_path, size=(4, 4))
    os.rmdir(tmp_path / "bee")
    os.makedirs(tmp_path / "cat" / "nested")
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "nested" / "ok.png")  # images may be in subfolders
    dataset = ImageFolder(tmp_path, size=(4, 4))
    assert dataset.classes == ["ant", "cat", "dog"] and dataset.labels.tolist() == [0, 1, 2]


def test_a_class_whose_images_all_fail_is_refused_naming_it(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for name in ["ant", "bee"]:
        os.makedirs(tmp_path / name)
    Image.new("RGB", (4, 4)).save(tmp_path / "ant" / "ok.png")
    (tmp_path / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match="broken.png"), \
            pytest.raises(ValueError, match=rf"none of the images in the class folder\(s\) {tmp_path}/bee could"):
        ImageFolder(tmp_path, size=(4, 4))


@pytest.mark.skipif(not os.path.isdir(SHARED_DOGS), reason=f"{SHARED_DOGS} is not on this machine")
def test_shared_dogs_vs_cats_at_32x32():
    Image = pytest.importorskip("PIL.Image")
    train = ImageFolder(os.path.join(SHARED_DOGS, "train"), size=(32, 32))
    validation = ImageFolder(os.path.join(SHARED_DOGS, "validation"), size=(32, 32))
    assert (len(train), len(validation)) == (2000, 1000)
    assert train.classes == validation.classes == ["cats", "dogs"]
    assert np.bincount(train.labels).tolist() == [1000, 1000]
    assert np.bincount(validation.labels).tolist() == [500, 500]
    assert train.images.shape == (2000, 3, 32, 32) and 0 <= train.images.min() < train.images.max() <= 1
    dogs = os.path.join(SHARED_DOGS, "validation", "dogs")
    path = os.path.join(dogs, sorted(os.listdir(dogs))[0])
    index = validation.files.index(path)
    assert validation.labels[index] == 1
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.NEAREST))
    assert validation.images[index, 1, 10, 20] == np.float32(pixels[10, 20, 1]) * np.float32(1 / 255)
