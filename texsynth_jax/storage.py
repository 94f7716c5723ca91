"""Where a job's files live: a local path, or a URL that etils.epath opens (gs://, s3://, ...).

Local paths go through `os` as they always have: a write goes to a temp file beside its target and is
renamed onto it (atomic_path), so no file is ever half written. A URL names an object in a store:
a write is one complete upload, which the store makes visible whole or not at all (there is no rename
there, and no temp file to leave behind), and a "folder" is a name prefix that exists once an object has
it. The cloud packages (`pip install "texsynth_jax[cloud]"`: etils[epath] and gcsfs) are imported on the
first URL only.
"""

import contextlib
import errno
import io
import os
import secrets


class StorageError(ValueError):
    """A URL that cannot be used here (no cloud packages); one line naming the fix."""


def is_url(path) -> bool:
    return isinstance(path, str) and "://" in path


def _epath(url: str):
    if os.environ.get("STORAGE_EMULATOR_HOST"):  # an emulator has no zonal buckets; gcsfs's check for them
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # would ask Google's own endpoint
    try:
        from etils import epath
    except ImportError:
        raise StorageError(f"{url} is a URL, and reading or writing URLs needs the cloud packages; "
                           "run `pip install \"texsynth_jax[cloud]\"`") from None
    _forget_listings(url)
    return epath.Path(url)


def _forget_listings(url: str) -> None:
    """Drop the store client's cached folder listings: another host (or an earlier run) may have written since
    this process listed a folder, and a job must see every object there is (resume, the hosts' manifests)."""
    try:
        from etils.epath.backend import fsspec_backend
        fsspec_backend.fs(url).invalidate_cache()  # epath's own client for the scheme: it holds the listings
    except Exception:  # a scheme that epath serves another way caches nothing
        pass


def join(folder: str, *names: str) -> str:
    if is_url(folder):
        return "/".join([folder.rstrip("/"), *names])
    return os.path.join(folder, *names)


def resolve(folder: str, name: str) -> str:
    """`name` as written in a list or work file in `folder`: an absolute path or a URL as it is, else relative
    to that folder."""
    return name if os.path.isabs(name) or is_url(name) else join(folder, name)


def parent(path: str) -> str:
    """The folder of `path` (for a local path, of its absolute form)."""
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(path)


def absolute(path: str) -> str:
    return path if is_url(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    return _epath(path).exists() if is_url(path) else os.path.exists(path)


def isfile(path: str) -> bool:
    return _epath(path).is_file() if is_url(path) else os.path.isfile(path)


def isdir(path: str) -> bool:
    return _epath(path).is_dir() if is_url(path) else os.path.isdir(path)


def listdir(folder: str) -> list[str]:
    """The names in `folder` (for a URL, the objects and sub-prefixes directly under it: none when no object
    has the prefix, as a store has no empty folders)."""
    if is_url(folder):
        try:
            return [p.name for p in _epath(folder).iterdir()]
        except FileNotFoundError:
            return []
    return os.listdir(folder)


def read_bytes(path: str) -> bytes:
    if is_url(path):
        return _epath(path).read_bytes()
    with open(path, "rb") as f:
        return f.read()


def opened(path: str):
    """A binary file object to read `path` from: the local file itself, or a URL's object in memory (a job's
    sources, records and checkpoints are megabytes: one download each, and seekable for zip and Pillow)."""
    return io.BytesIO(read_bytes(path)) if is_url(path) else open(path, "rb")


@contextlib.contextmanager
def writer(path: str, sync: bool = False):
    """A binary file object whose contents become `path` whole, or not at all if the block fails. Local: a temp
    file beside `path`, renamed onto it (fsynced first with `sync`); a URL: one upload of the contents. A
    failed write is an OSError naming `path`."""
    if not is_url(path):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        return
    target, contents = _epath(path), io.BytesIO()
    yield contents
    try:
        target.write_bytes(contents.getvalue())
    except OSError as e:
        raise OSError(e.errno or errno.EIO, e.strerror or str(e), path) from e
    except Exception as e:  # the store's client errors (HTTP, auth) as the OSError every write raises
        raise OSError(errno.EIO, f"{type(e).__name__}: {e}", path) from e


def write_bytes(path: str, data: bytes, sync: bool = False) -> None:
    with writer(path, sync) as f:
        f.write(data)


TEMP_PREFIX, TEMP_TAG = ".tmp-", 8  # a temp file of atomic_path: .tmp-<root>-<8 hex digits><ext>


def temp_target(name: str) -> str | None:
    """The file name whose atomic_path temp file `name` is (`.tmp-a_seed0-1f2e3d4c.png` ->
    `a_seed0.png`), or None if `name` is not one. A killed save leaves such a file; this tells whose."""
    root, ext = os.path.splitext(name)
    body, tag = root[len(TEMP_PREFIX):-TEMP_TAG - 1], root[-TEMP_TAG - 1:]
    if not (root.startswith(TEMP_PREFIX) and body and tag[0] == "-"
            and all(c in "0123456789abcdef" for c in tag[1:])):
        return None
    return body + ext


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temp path beside `path`; on success rename it onto `path`, on failure remove it.

    The temp file is named for `path` (see temp_target), so the next run into the folder can remove
    the ones a kill left behind. An OSError names `path`, not the temp file that is gone."""
    root, ext = os.path.splitext(os.path.abspath(path))
    folder, stem = os.path.split(root)
    while True:
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{stem}-{secrets.token_hex(TEMP_TAG // 2)}{ext}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the mode open() gives
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from e
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # a full disk, say: name the file asked for
            raise OSError(e.errno, e.strerror or str(e), path) from e
        raise


def remove(path: str) -> None:
    """Delete `path`; a missing file is not an error."""
    if is_url(path):
        _epath(path).unlink(missing_ok=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def makedirs(folder: str) -> None:
    """Create `folder` and its parents (a URL's prefix needs no creating)."""
    if not is_url(folder):
        os.makedirs(folder, exist_ok=True)
