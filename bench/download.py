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


def _refuse(archive: Path, member: str, why: str) -> BenchError:
    return BenchError(
        f"refusing to extract {archive}: member {member!r} {why}",
        "the archive is corrupt or malicious; delete it and download it again from the "
        "official source",
    )


MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 64 * 2**30
MAX_RATIO = 50.0
"""Limits on what one archive may unpack to: member count, total bytes (SONYC-UST's
largest audio archive is under 10 GB, ESC-50's zip 0.6 GB) and bytes per archive byte
(audio barely compresses; a ratio of 1000 is a decompression bomb)."""


def _parts(archive: Path, name: str) -> list[str]:
    """A member name as path components; absolute paths and drive letters refused."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise _refuse(archive, name, "has an absolute path")
    return [p for p in pure.parts if p not in ("", ".")]


class _Tree:
    """The archive's own symbolic links, so that every path is resolved as the
    filesystem will resolve it once they exist: a link made by one member and used by
    the next (``a -> .``, then ``a/../../x``) is judged like any other path."""

    def __init__(self, archive: Path, links: dict[tuple[str, ...], str]) -> None:
        self.archive = archive
        self.links = links

    def resolve(self, name: str, parts: list[str], *, follow_last: bool) -> tuple[str, ...]:
        """Components of ``parts`` resolved inside the archive root, following the
        archive's links; an error if any step would leave the root."""
        stack = list(parts)
        done: list[str] = []
        hops = 0
        while stack:
            part = stack.pop(0)
            if part == "..":
                if not done:
                    raise _refuse(self.archive, name, "would be written outside the target folder")
                done.pop()
                continue
            done.append(part)
            link = self.links.get(tuple(done))
            if link is not None and (stack or follow_last):
                hops += 1
                if hops > 40:
                    raise _refuse(self.archive, name, "goes through a loop of links")
                target = _parts(self.archive, link) if not link.startswith("/") else None
                if target is None:
                    raise _refuse(self.archive, name, f"goes through the absolute link {link!r}")
                done.pop()
                stack = target + stack
        return tuple(done)


def _check_members(archive: Path, entries: list[tuple[str, str, str | None, int]]) -> None:
    """Refuse the archive before anything is written: ``entries`` are (name, kind, link
    target, size) with kind ``file``, ``dir``, ``symlink``, ``hardlink`` or ``other``."""
    if len(entries) > MAX_MEMBERS:
        raise BenchError(
            f"refusing to extract {archive}: {len(entries)} members, over the limit of "
            f"{MAX_MEMBERS} (l2i_bench.download.MAX_MEMBERS)",
            "the archive is not the official one; download it again from the official source",
        )
    total = sum(max(size, 0) for *_, size in entries)
    packed = max(archive.stat().st_size, 1)
    if total > MAX_TOTAL_BYTES or total / packed > MAX_RATIO:
        raise BenchError(
            f"refusing to extract {archive}: it unpacks to {total / 2**20:.1f} MB from "
            f"{packed / 2**20:.1f} MB (limits: {MAX_TOTAL_BYTES / 2**30:.0f} GB in all, "
            f"{MAX_RATIO:g} bytes per archive byte; l2i_bench.download.MAX_TOTAL_BYTES, "
            "MAX_RATIO)",
            "the archive is not the official one (a decompression bomb?); download it again "
            "from the official source",
        )
    links = {}
    for name, kind, link, _ in entries:
        if kind == "other":
            raise _refuse(archive, name, "is a device, FIFO or other special file")
        parts = _parts(archive, name)
        if kind == "symlink":
            links[tuple(parts)] = link or ""
    tree = _Tree(archive, links)
    for name, kind, link, _ in entries:
        parts = _parts(archive, name)
        tree.resolve(name, parts, follow_last=False)
        if kind == "symlink":
            pure = PurePosixPath((link or "").replace("\\", "/"))
            if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
                raise _refuse(archive, name, f"is a link to the absolute path {link!r}")
            tree.resolve(name, parts[:-1] + _parts(archive, link or ""), follow_last=True)
        elif kind == "hardlink":
            tree.resolve(name, _parts(archive, link or ""), follow_last=True)


def _checked_path(archive: Path, target: Path, name: str) -> Path:
    """Where ``name`` is written (after :func:`_check_members` accepted the archive)."""
    dest = (target / PurePosixPath(name.replace("\\", "/"))).resolve()
    if dest != target and target not in dest.parents:
        raise _refuse(archive, name, f"would be written outside {target}")
    return dest


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
        entries = []
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", errors="replace")
                entries.append((info.filename, "symlink", link, 0))
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                entries.append((info.filename, "other", None, 0))
            else:
                kind = "dir" if info.is_dir() else "file"
                entries.append((info.filename, kind, None, info.file_size))
        _check_members(archive, entries)
        out = []
        for info in infos:
            zf.extract(info, target)
            out.append(_checked_path(archive, target, info.filename))
        return out


def _extract_tar(archive: Path, target: Path) -> list[Path]:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        entries = []
        for m in members:
            if m.issym():
                entries.append((m.name, "symlink", m.linkname, 0))
            elif m.islnk():
                entries.append((m.name, "hardlink", m.linkname, 0))
            elif m.isfile() or m.isdir():
                entries.append((m.name, "file" if m.isfile() else "dir", None, m.size))
            else:
                entries.append((m.name, "other", None, 0))
        _check_members(archive, entries)
        try:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                tf.extractall(target, members=members, filter="data")
            else:  # pragma: no cover - older Pythons
                tf.extractall(target, members=members)
        except (tarfile.TarError, OSError) as err:
            raise BenchError(
                f"extracting {archive} failed: {type(err).__name__}: {err}",
                f"delete {target} and the archive, and download it again",
            ) from err
        return [_checked_path(archive, target, m.name) for m in members]
