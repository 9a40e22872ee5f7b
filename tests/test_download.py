"""The downloader against file:// URLs and archives built here: no network."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from l2i_bench.download import download, safe_extract
from l2i_bench.errors import BenchError


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_zip(
        tmp_path / "data.zip", {"top/meta/a.csv": b"x,y\n1,2\n", "top/b.bin": b"\0" * 5000}
    )


def test_download_returns_and_checks_sha256(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "out" / "copy.zip"
    got = download(
        archive.as_uri(), dest, expected_size=len(data), expected_sha256=sha, show_progress=False
    )
    assert got == sha and dest.read_bytes() == data


@pytest.mark.parametrize("kwargs", [{"expected_size": 1}, {"expected_sha256": "0" * 64}])
def test_failed_check_leaves_nothing(archive: Path, tmp_path: Path, kwargs: dict) -> None:
    dest = tmp_path / "copy.zip"
    with pytest.raises(BenchError, match="failed its checks"):
        download(archive.as_uri(), dest, show_progress=False, **kwargs)
    assert list(tmp_path.glob("copy.zip*")) == []


def test_unreachable_url_is_a_bench_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="cannot download"):
        download((tmp_path / "absent.zip").as_uri(), tmp_path / "x.zip", show_progress=False)


def test_safe_extract_zip(archive: Path, tmp_path: Path) -> None:
    safe_extract(archive, tmp_path / "t")
    assert (tmp_path / "t" / "top" / "meta" / "a.csv").read_bytes() == b"x,y\n1,2\n"
    assert (tmp_path / "t" / "top" / "b.bin").stat().st_size == 5000


@pytest.mark.parametrize("name", ["../evil", "top/../../evil", "/tmp/evil-abs"])
def test_zip_escaping_member_is_refused(tmp_path: Path, name: str) -> None:
    bad = make_zip(tmp_path / "bad.zip", {"ok.txt": b"fine", name: b"pwned"})
    target = tmp_path / "deep" / "t"
    with pytest.raises(BenchError, match="refusing to extract"):
        safe_extract(bad, target)
    assert not (tmp_path / "deep" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (target / "ok.txt").exists()  # nothing written before the check


def test_tar_symlink_out_is_refused_inside_is_fine(tmp_path: Path) -> None:
    bad = make_tar(tmp_path / "bad.tar", {"a.txt": b"a"}, {"link": "../../etc"})
    with pytest.raises(BenchError, match="link"):
        safe_extract(bad, tmp_path / "t1")
    good = make_tar(tmp_path / "good.tar", {"d/a.txt": b"a"}, {"d/link": "a.txt"})
    safe_extract(good, tmp_path / "t2")
    assert (tmp_path / "t2" / "d" / "link").read_bytes() == b"a"


def test_tar_path_traversal_is_refused(tmp_path: Path) -> None:
    bad = make_tar(tmp_path / "bad.tar", {"../evil": b"x"}, {})
    with pytest.raises(BenchError, match=r"\.\."):
        safe_extract(bad, tmp_path / "t")
    assert not (tmp_path / "evil").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    page = tmp_path / "page.zip"
    page.write_text("<html>rate limited</html>")
    with pytest.raises(BenchError, match="neither a zip nor a tar"):
        safe_extract(page, tmp_path / "t")


def test_two_stage_link_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # "a" -> "." is harmless alone; "a/b" -> "../.." then reaches outside once "a"
    # exists on disk. Judged as the filesystem will resolve it, before any write.
    archive = make_tar(
        tmp_path / "two.tar",
        {"top/readme.txt": b"hi"},
        {"top/a": ".", "top/a/b": "../..", "top/a/b/escape": "x"},
    )
    target = tmp_path / "out"
    with pytest.raises(BenchError, match="outside"):
        safe_extract(archive, target)
    assert not any(target.iterdir())


def test_link_chain_out_of_the_target_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "chain.tar", {}, {"x": "y/..", "y": "..", "z": "x/../etc"})
    with pytest.raises(BenchError, match="outside"):
        safe_extract(archive, tmp_path / "out")


def test_link_loop_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "loop.tar", {}, {"p": "q", "q": "p", "r": "p/x"})
    with pytest.raises(BenchError, match="loop"):
        safe_extract(archive, tmp_path / "out")


def test_decompression_bomb_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(8 * 2**20))  # 8 MB of zeros pack to ~8 KB
    target = tmp_path / "out"
    with pytest.raises(BenchError, match="MAX_RATIO") as err:
        safe_extract(path, target)
    assert "bytes per archive byte" in err.value.problem
    assert not any(target.iterdir())


def test_member_count_limit_is_named(tmp_path: Path, monkeypatch) -> None:
    import l2i_bench.download as dl

    monkeypatch.setattr(dl, "MAX_MEMBERS", 3)
    archive = make_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(4)})
    with pytest.raises(BenchError, match="4 members, over the limit of 3"):
        safe_extract(archive, tmp_path / "out")
