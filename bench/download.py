"""Fetch and unpack dataset archives without trusting them.

Why this module exists: an archive from the internet is untrusted input. A download
can be truncated (checked against ``Content-Length`` and an expected size) or altered
(checked against an expected sha256, and the sha256 is always returned so the dataset
can record what it unpacked). An archive member can try to write outside the target
folder (``../x``, ``/etc/x``, or a symlink pointing out, the "tar slip" family), so
:func:`safe_extract` checks every member before anything is written.

``urllib`` handles ``https://`` and ``file://`` alike, which is how the tests exercise
the real code path without a network.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from l2i_bench.errors import BenchError

CHUNK_BYTES = 1 << 20


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    show_progress: bool = True,
) -> str:
    """Stream ``url`` to ``dest`` and return the sha256 (hex) of what was received.

    The bytes go to ``dest + '.part'`` first and are moved into place only after every
    check passed, so a failed or interrupted download never looks complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header and header.isdigit() else None
            with (
                open(part, "wb") as out,
                tqdm(
                    total=announced or expected_size,
                    unit="B",
                    unit_scale=True,
                    desc=f"downloading {dest.name}",
                    disable=not show_progress,
                ) as bar,
            ):
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise BenchError(
            f"cannot download {url}: {err}",
            f"check the network connection, or fetch the archive by hand and save it as {dest}",
        ) from err

    sha256 = digest.hexdigest()
    problems = []
    if announced is not None and received != announced:
        problems.append(f"received {received} bytes but the server announced {announced}")
    if expected_size is not None and received != expected_size:
        problems.append(f"received {received} bytes, expected {expected_size}")
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        problems.append(f"sha256 {sha256} does not match the expected {expected_sha256}")
    if problems:
        part.unlink(missing_ok=True)
        raise BenchError(
            f"download of {url} failed its checks: {'; '.join(problems)}",
            "retry the download; if it fails again the upstream archive changed, so check "
            "its sha256 by hand before trusting it",
        )
    os.replace(part, dest)
    return sha256


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse(archive: Path, member: str, why: str) -> BenchError:
    return BenchError(
        f"refusing to extract {archive}: member {member!r} {why}",
        "the archive is corrupt or malicious; delete it and download it again from the "
        "official source",
    )


def _checked_path(archive: Path, target: Path, name: str) -> Path:
    """Where ``name`` would be written, or an error if that is outside ``target``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in pure.parts:
        raise _refuse(archive, name, "contains '..'")
    dest = (target / pure).resolve()
    if dest != target and target not in dest.parents:
        raise _refuse(archive, name, f"would be written outside {target}")
    return dest


def _check_link(archive: Path, target: Path, name: str, link: str, *, relative_to: Path) -> None:
    pure = PurePosixPath(link.replace("\\", "/"))
    if pure.is_absolute():
        raise _refuse(archive, name, f"is a link to the absolute path {link!r}")
    dest = (relative_to / pure).resolve()
    if dest != target and target not in dest.parents:
        raise _refuse(archive, name, f"is a link pointing outside {target} ({link!r})")


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Unpack a zip or tar archive into ``target`` after checking every member.

    Refused (with :class:`BenchError`, before anything is written): absolute paths,
    ``..`` components, links pointing outside ``target``, and device or FIFO members.
    Returns the extracted paths.
    """
    archive = Path(archive)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, target)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, target)
    raise BenchError(
        f"{archive} is neither a zip nor a tar archive",
        "delete it and download it again; the download may have been an error page",
    )


def _extract_zip(archive: Path, target: Path) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            dest = _checked_path(archive, target, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8", errors="replace")
                _check_link(archive, target, info.filename, link, relative_to=dest.parent)
        out = []
        for info in infos:
            zf.extract(info, target)
            out.append(_checked_path(archive, target, info.filename))
        return out


def _extract_tar(archive: Path, target: Path) -> list[Path]:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            dest = _checked_path(archive, target, member.name)
            if member.issym():
                _check_link(archive, target, member.name, member.linkname, relative_to=dest.parent)
            elif member.islnk():
                _check_link(archive, target, member.name, member.linkname, relative_to=target)
            elif not (member.isfile() or member.isdir()):
                raise _refuse(archive, member.name, "is a device, FIFO or other special file")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
            tf.extractall(target, members=members, filter="data")
        else:  # pragma: no cover - older Pythons
            tf.extractall(target, members=members)
        return [_checked_path(archive, target, m.name) for m in members]
