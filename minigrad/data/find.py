"""Where datasets are looked for, and how they are downloaded (checksummed, written atomically).

A dataset called ``name`` (``"mnist"``, ``"fashion-mnist"``,
``"cifar-10-batches-py"``) is looked for, in order, in

1. ``root`` and ``root/<name>`` when the caller passes ``root`` (and nowhere
   else then: a mistyped root must not silently load some other copy);
2. ``$MINIGRAD_DATA/<name>`` when that variable is set;
3. ``~/.cache/minigrad/<name>``;
4. places a system package installs it (Fashion-MNIST:
   ``/usr/share/datasets/fashion-mnist``, from ``apt-get install dataset-fashion-mnist``).

The first folder holding every file needed is used. With ``download=True``
and nothing found, the files are fetched from their publisher into
``root/<name>`` or ``~/.cache/minigrad/<name>``. Every download is checked
against the MD5 sum its publisher lists and written to a temporary file that
is renamed into place only once verified, so a failed or tampered download
never leaves a file that looks complete. While it runs, a tqdm progress bar
(when tqdm is installed) shows the bytes fetched on stderr. Tarballs are
unpacked member by member, refusing links, absolute paths and ``..``.
"""
import gzip
import hashlib
import os
import posixpath
import sys
import tarfile
import uuid
import zlib
from urllib.request import urlopen

CHUNK = 1 << 20


def candidate_folders(name, root=None, system_places=()):
    """The folders to look in for the dataset ``name``, in order."""
    if root is not None:
        root = os.path.expanduser(os.fspath(root))
        return [root, os.path.join(root, name)]
    env = os.environ.get("MINIGRAD_DATA")
    return ([os.path.join(env, name)] if env else []) + [os.path.join(cache_folder(), name), *system_places]


def cache_folder():
    """``~/.cache/minigrad``: where downloads go when no ``root`` is given."""
    return os.path.join(os.path.expanduser("~"), ".cache", "minigrad")


def locate(dataset, name, missing, root=None, system_places=(), download=None, how_to_get=""):
    """Return the first candidate folder for which ``missing(folder)`` is empty.

    ``missing(folder)`` lists the needed files a folder lacks. If no folder has
    them all, ``download(folder)`` (when given) fetches them into
    ``root/<name>`` or ``~/.cache/minigrad/<name>``; otherwise a
    FileNotFoundError lists every place looked, what each lacked, and
    ``how_to_get`` them.
    """
    looked = ["$MINIGRAD_DATA is not set"] if root is None and not os.environ.get("MINIGRAD_DATA") else []
    for folder in candidate_folders(name, root, system_places):
        lacking = missing(folder) if os.path.isdir(folder) else None
        if lacking == []:
            return folder
        looked.append(f"{folder} ({'no such folder' if lacking is None else 'lacks ' + ', '.join(lacking)})")
    if download is not None:
        target = os.path.join(os.path.expanduser(os.fspath(root)) if root is not None else cache_folder(), name)
        os.makedirs(target, exist_ok=True)
        download(target)
        if missing(target):
            raise FileNotFoundError(f"{dataset}: after downloading, {target} still lacks "
                                    f"{', '.join(missing(target))}")
        return target
    places = "\n".join("  " + line for line in looked)
    raise FileNotFoundError(f"{dataset}: could not find the data files. Looked in:\n{places}\n"
                            f"To get them: {how_to_get}")


def download(url, path, md5, progress=True):
    """Fetch ``url`` into ``path`` if the bytes' MD5 is ``md5``; otherwise raise ValueError and keep nothing.

    ``progress`` shows a tqdm bar on stderr (sized from Content-Length when
    the server sends it); without tqdm installed, nothing is shown.
    """
    temporary = f"{path}.{uuid.uuid4().hex}.part"
    digest = hashlib.md5()
    try:
        with urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
            bar = progress_bar(os.path.basename(path), content_length(response)) if progress else None
            try:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        if digest.hexdigest() != md5:
            raise ValueError(f"download of {url} failed its checksum: MD5 {digest.hexdigest()}, "
                             f"published {md5}; nothing was saved (a corrupted or altered file). Try again.")
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(f"could not download {url} to {path}: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def content_length(response):
    """The size the server announced for ``response`` (Content-Length), or None when it sent none."""
    headers = getattr(response, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return int(length) if length is not None and length.strip().isdigit() else None


def progress_bar(description, total):
    """A tqdm bar counting bytes on stderr (``total`` bytes, or open-ended when None); None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr)


def extract_tar(archive, into, top):
    """Unpack the regular files under ``top/`` in the tarball ``archive`` into ``into/top``.

    Members are written one by one (temporary file, then rename) rather than
    with ``tar.extractall``, so that nothing can land outside ``into/top``:
    a link, a device, an absolute path or a ``..`` raises ValueError.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = posixpath.normpath(member.name).split("/")
                if member.name.startswith("/") or ".." in parts or parts[0] != top:
                    raise ValueError(f"{archive}: refusing member {member.name!r} (outside {top}/)")
                if member.isdir():
                    continue
                if not member.isfile() or len(parts) != 2:
                    raise ValueError(f"{archive}: refusing member {member.name!r} (not a plain file in {top}/)")
                path = os.path.join(into, top, parts[1])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                temporary = f"{path}.{uuid.uuid4().hex}.part"
                try:
                    with tar.extractfile(member) as source, open(temporary, "wb") as out:
                        while chunk := source.read(CHUNK):
                            out.write(chunk)
                    os.replace(temporary, path)
                finally:
                    if os.path.exists(temporary):
                        os.remove(temporary)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{archive}: not a readable tar archive ({error})") from error
