"""The report's Ogg files are byte-reproducible and still valid Ogg Vorbis."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from l2i_bench import ogg
from l2i_bench.audio import SAMPLE_RATE, write_audio
from l2i_bench.errors import BenchError


def _wave(seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _libsndfile_ogg(wave: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, SAMPLE_RATE, format="OGG", subtype="VORBIS", compression_level=0.7)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SAMPLE_RATE
    return samples


def test_crc_is_the_ogg_checksum() -> None:
    # CRC-32 with polynomial 0x04C11DB7, init 0, unreflected, no final XOR: the catalogue's
    # CRC-32/CKSUM check value 0x765E7680 without its final XOR
    assert ogg.page_crc(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF
    # and it reproduces every checksum libogg wrote into a real file
    data = _libsndfile_ogg(_wave())
    spans = ogg.page_spans(data)
    assert len(spans) >= 3  # two header pages and audio
    for start, end in spans:
        page = bytearray(data[start:end])
        written = struct.unpack("<I", page[ogg.CRC_AT : ogg.CRC_AT + 4])[0]
        page[ogg.CRC_AT : ogg.CRC_AT + 4] = b"\0\0\0\0"
        assert ogg.page_crc(page) == written


def test_libsndfile_alone_is_not_reproducible() -> None:
    """The reason for the module: when this fails, libsndfile is reproducible and the
    rewrite can go."""
    wave = _wave()
    assert _libsndfile_ogg(wave) != _libsndfile_ogg(wave)


def test_same_samples_same_bytes(tmp_path) -> None:
    wave = _wave()
    first, second = tmp_path / "a.ogg", tmp_path / "b.ogg"
    write_audio(first, wave)
    write_audio(second, wave)
    data = first.read_bytes()
    assert data == second.read_bytes()
    for start, _ in ogg.page_spans(data):
        assert struct.unpack("<I", data[start + 14 : start + 18])[0] == ogg.SERIAL
    # only the serial and the checksums changed: same length, same payload
    raw = _libsndfile_ogg(np.clip(wave, -0.999, 0.999))
    assert len(raw) == len(data)
    assert ogg.page_spans(raw) == ogg.page_spans(data)


def test_rewritten_file_decodes_to_the_same_samples() -> None:
    raw = _libsndfile_ogg(_wave())
    fixed = ogg.with_fixed_serial(raw)
    np.testing.assert_array_equal(_decode(fixed), _decode(raw))
    assert _decode(fixed).shape[0] == _wave().shape[0]


def test_a_wrong_checksum_would_be_caught_by_the_decoder() -> None:
    """Shows the decode test above can fail: libogg drops a page whose CRC is wrong."""
    raw = _libsndfile_ogg(_wave())
    start, _ = ogg.page_spans(raw)[-1]
    broken = bytearray(ogg.with_fixed_serial(raw))
    broken[start + ogg.CRC_AT] ^= 0xFF
    assert _decode(bytes(broken)).shape[0] < _decode(raw).shape[0]


@pytest.mark.parametrize("cut", [5, 30, -7])
def test_truncated_or_foreign_bytes_are_refused(cut: int) -> None:
    raw = _libsndfile_ogg(_wave(0.2))
    with pytest.raises(BenchError, match="byte"):
        ogg.with_fixed_serial(raw[:cut])
    with pytest.raises(BenchError, match="not an Ogg page at byte 0"):
        ogg.with_fixed_serial(b"RIFF" + raw[4:])
