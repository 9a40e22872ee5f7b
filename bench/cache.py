"""Cache entries that cannot run code and cannot be silently wrong.

Every cache file the suite writes (decoded audio and its gains, classifier checkpoints,
NMF dictionaries, fitted explainers) goes through this module, so each guarantee is
made in one place:

- **No code from a cache.** Torch entries are read with ``torch.load(weights_only=True)``
  (tensors and plain containers only; a pickled payload is refused, never run) and
  arrays with ``np.load(allow_pickle=False)``.
- **Integrity.** Beside each entry, ``<file>.integrity.json`` is written *after* the data
  is in place: the size, the SHA-256 of the bytes and the key the entry was made for.
  On load, a missing file, another size or hash, another key, or any non-finite value in
  the loaded tensors discards the entry with a warning that names the file, and the
  caller redoes the work. An entry written by an older l2i-bench (no record) is checked
  the same way for safety and finiteness and then adopted (its record written).
- **Whole or absent.** Data goes to a unique temporary name (pid and a random tag, so two
  writers never share one), is flushed and renamed; temporaries left by a killed process
  are removed by the next one (:func:`remove_stale_temporaries`).
- **One writer per entry.** :func:`entry_lock` is an advisory file lock (``fcntl``): a
  second process that wants the same entry waits for the first and then reads it.

Cost: one extra read of the entry for its hash at load (SHA-256 at about 500 MB/s on a
2-core CPU: 0.4 s for ESC-50 fold 4's 211 MB training split; see the README's
"Reliability").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from l2i_bench.errors import BenchError

NUMPY_SCALARS = [
    np._core.multiarray.scalar,
    np.dtype,
    *(type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")),
]
"""The only globals a torch entry may name beyond torch's own: numpy scalars (a dtype and
raw bytes, in fit facts written by earlier versions of l2i-bench). Data, not code."""
RECORD_SUFFIX = ".integrity.json"
LOCK_SUFFIX = ".lock"
_TEMP = re.compile(r"\.(?P<pid>\d+)(-[0-9a-f]+)?\.tmp")
"""How temporaries are named (``.NAME.PID-TAG.tmp``, and the older ``NAME.PID.tmp.npy``):
the pid says whether the writer is still alive."""


def warn(message: str) -> None:
    """A warning on stderr that does not break a progress bar."""
    tqdm.write(f"warning: {message}", file=sys.stderr)


def record_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + RECORD_SUFFIX)


def temporary_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same folder, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def write_record(path: Path, key: str) -> None:
    """The integrity record of a finished entry; written after the data, so a record
    always describes bytes that were completely written."""
    size, sha256 = file_digest(path)
    payload = {"key": key, "size": size, "sha256": sha256, "file": Path(path).name}
    target = record_path(path)
    tmp = temporary_path(target)
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, target)


def check_record(path: Path, key: str) -> str | None:
    """Why the entry at ``path`` cannot be trusted, or None if its record matches.
    Returns :data:`UNRECORDED` for an entry written before records existed."""
    record_file = record_path(path)
    if not record_file.is_file():
        return UNRECORDED
    try:
        record = json.loads(record_file.read_text())
        expected = (str(record["key"]), int(record["size"]), str(record["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return f"its integrity record {record_file.name} is unreadable"
    if expected[0] != key:
        return f"it was made for another key ({expected[0]!r}, wanted {key!r})"
    size, sha256 = file_digest(path)
    if size != expected[1]:
        return f"its size is {size} bytes, the record says {expected[1]} (truncated or replaced)"
    if sha256 != expected[2]:
        return "its content hash differs from the record (the bytes changed after writing)"
    return None


UNRECORDED = "no record"
"""What :func:`check_record` says of an entry written before records existed."""


def _entry_state(path: Path, key: str) -> str | None:
    """``"recorded"`` (its record matches), :data:`UNRECORDED` (to be checked, then
    adopted), or None: absent, or discarded with a warning for failing its record."""
    if not path.is_file():
        return None
    problem = check_record(path, key)
    if problem in (None, UNRECORDED):
        return problem or "recorded"
    discard(path, problem)
    return None


def discard(path: Path, reason: str) -> None:
    """Remove an entry and its record, saying which file and why."""
    warn(f"discarding cache entry {path}: {reason}; it will be recomputed")
    Path(path).unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def all_finite(value: Any) -> bool:
    """Whether every tensor, array and float inside ``value`` (nested containers) is
    finite; non-numeric leaves pass."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all()) if value.is_floating_point() else True
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all()) if np.issubdtype(value.dtype, np.floating) else True
    if isinstance(value, float):
        return bool(np.isfinite(value))
    if isinstance(value, Mapping):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True


def _finite_rows(array: np.ndarray, chunk: int = 256) -> bool:
    """``all_finite`` for a (possibly memory-mapped) array, a block of rows at a time."""
    for start in range(0, len(array), chunk):
        if not np.isfinite(np.asarray(array[start : start + chunk])).all():
            return False
    return True


def _publish(tmp: Path, path: Path, key: str) -> None:
    """Move a finished temporary into place, then write its record."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    record_path(path).unlink(missing_ok=True)  # no window where an old record meets new data
    os.replace(tmp, path)
    write_record(path, key)


def _write_entry(path: Path, key: str, write: Callable[[Path], object]) -> None:
    """``write`` the entry into a temporary beside ``path``, then move it into place
    with its record; a failure or a kill leaves only the temporary (removed by
    :func:`remove_stale_temporaries` or the ``finally`` here)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        _publish(tmp, path, key)
    finally:
        tmp.unlink(missing_ok=True)


def copy_entry(source: Path, path: Path, key: str) -> str | None:
    """Copy the recorded entry ``source`` to ``path`` (atomically, with a fresh record);
    returns why it was not copied (``source`` fails or lacks its record under ``key``)
    or None. Published classifiers enter and leave a cache this way."""
    source, path = Path(source), Path(path)
    problem = check_record(source, key)
    if problem is not None:
        return problem
    _write_entry(path, key, lambda tmp: shutil.copyfile(source, tmp))
    return None


def save_torch(path: Path, payload: Any, key: str) -> None:
    """Write a torch entry (tensors and plain containers) whole, then its record."""
    _write_entry(path, key, lambda tmp: torch.save(payload, tmp))


def load_torch(path: Path, key: str, *, map_location: Any = "cpu") -> Any | None:
    """The payload of a torch entry, or None (entry discarded with a warning) when it is
    missing, fails its record, holds anything but tensors and plain containers, or holds
    a non-finite value."""
    path = Path(path)
    state = _entry_state(path, key)
    if state is None:
        return None
    try:
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a pickled object, a truncated file, another format
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        discard(path, f"it is not a plain tensor file ({type(err).__name__}: {first[:200]})")
        return None
    if not all_finite(payload):
        discard(path, "it holds NaN or infinite values")
        return None
    if state == UNRECORDED:
        write_record(path, key)  # adopted: safe to load and finite, recorded from now on
    return payload


def save_array(path: Path, array: np.ndarray, key: str) -> None:
    """Write a ``.npy`` entry whole, then its record."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)

    _write_entry(path, key, write)


def build_array(
    path: Path,
    shape: tuple[int, ...],
    fill: Callable[[np.ndarray], None],
    key: str,
    dtype: Any = np.float32,
) -> None:
    """Create a ``.npy`` entry by filling a memory-mapped temporary in place (an array
    larger than memory never has to fit in it), then publish it with its record. A
    failure or a kill leaves only the temporary, removed by the next process."""

    def write(tmp: Path) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(array)
        array.flush()
        del array

    _write_entry(path, key, write)


def load_array(path: Path, key: str, *, mmap: bool = False) -> np.ndarray | None:
    """A ``.npy`` entry (memory-mapped read-only with ``mmap``), or None (discarded with a
    warning) when it fails its record, is not a plain numeric array, or holds a
    non-finite value."""
    path = Path(path)
    state = _entry_state(path, key)
    if state is None:
        return None
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as err:
        discard(path, f"it is not a readable .npy array ({type(err).__name__}: {err})")
        return None
    if state == UNRECORDED:  # adopted after one full check; later loads trust the hash
        if not _finite_rows(array):
            discard(path, "it holds NaN or infinite values")
            return None
        write_record(path, key)
    return array


@contextlib.contextmanager
def entry_lock(path: Path, *, message: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock for the entry ``path`` (a ``.lock`` file beside
    it); a second holder waits, printing ``message`` (or a default) once."""
    path = Path(path)
    with _locked(
        path.with_name(path.name + LOCK_SUFFIX),
        message or f"waiting for {{holder}}, which is writing {path}",
    ):
        yield


@contextlib.contextmanager
def folder_lock(folder: Path, *, message: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on a whole folder (``FOLDER/.lock``): one run per
    output folder at a time; a second waits for the first, printing ``message``."""
    folder = Path(folder)
    with _locked(folder / LOCK_SUFFIX, message or f"waiting for {{holder}}, which holds {folder}"):
        yield


@contextlib.contextmanager
def _locked(lock_file: Path, message: str) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            tqdm.write(message.replace("{holder}", holder), file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_writable(folder: Path, flag: str) -> None:
    """Create ``folder`` and prove a file can be written in it, before any work; the
    error names the folder and the option that chose it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(folder / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise BenchError(
            f"cannot write in {folder} ({err.strerror or err})",
            f"choose a writable folder with {flag}",
        ) from err


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (the writer of a temporary)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folders: Sequence[Path]) -> list[Path]:
    """Remove temporaries whose writer is gone (killed mid-write) from ``folders`` and
    their subfolders; returns what was removed. A live writer's files are left alone."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for tmp in folder.rglob("*.tmp*"):
            match = _TEMP.search(tmp.name)
            if match is None or not tmp.is_file() or process_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed
