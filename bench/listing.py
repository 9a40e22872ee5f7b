"""Reading a dataset's listing (its CSV of clips) without trusting it.

A listing is data from outside: it may be in another encoding, list one clip twice, or
name a file outside the data folder. Dataset plugins read it through these helpers so
each such file gets the same clear error naming the file, the line and the fix, instead
of a traceback or a silently wrong dataset (a duplicated clip counted twice in every
metric; ``../../`` reading whatever the path reaches).
"""

from __future__ import annotations

import io
from pathlib import Path

from l2i_bench.errors import BenchError


def read_listing(path: Path, fix: str) -> io.StringIO:
    """The listing's text (UTF-8, a BOM allowed) as a file object for ``csv``; a byte
    that is not UTF-8 is an error naming its line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BenchError(
            f"{path} line {line} is not UTF-8 (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); the listing must be UTF-8 text",
            f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8), or {fix}",
        ) from err


def listed_file(folder: Path, name: str, listing: Path, line: int, fix: str) -> Path:
    """``folder / name`` for a file name taken from a listing: a bare name only, never a
    path that could leave ``folder`` (``../``, an absolute path, a sub-folder)."""
    pure = Path(name)
    if not name or pure.name != name or name in (".", "..") or "\\" in name:
        raise BenchError(
            f"{listing} line {line}: file name {name!r} is not a bare file name inside "
            f"{folder} (no folders, no '..', no absolute paths)",
            f"repair the listing, or {fix}",
        )
    return Path(folder) / name


class SeenRows:
    """Remembers where each key of a listing first appeared, to refuse duplicates."""

    def __init__(self, listing: Path, fix: str) -> None:
        self.listing = listing
        self.fix = fix
        self.first: dict[object, int] = {}

    def add(self, key: object, line: int, what: str) -> None:
        first = self.first.setdefault(key, line)
        if first != line:
            raise BenchError(
                f"{self.listing} line {line} repeats {what} of line {first}; a clip listed "
                "twice would count twice in every metric",
                f"remove the duplicate row, or {self.fix}",
            )
