"""The shared front end against librosa, and the audio reader's refusals."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from l2i_bench.audio import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, FrontEnd, read_audio
from l2i_bench.errors import BenchError


def test_logmel_matches_librosa_magnitude_mel_in_db():
    """L2I's features: librosa mel on |X| (not power), power_to_db(ref=1, top_db=80),
    with librosa 0.8's reflect padding."""
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    wave[: SAMPLE_RATE // 4] *= 0.001  # a quiet start exercises the top_db floor
    spec = np.abs(librosa.stft(wave, n_fft=N_FFT, hop_length=HOP_LENGTH, pad_mode="reflect"))
    mel = librosa.feature.melspectrogram(sr=SAMPLE_RATE, S=spec, n_fft=N_FFT, n_mels=N_MELS)
    expected = librosa.power_to_db(mel).T
    ours = FrontEnd("cpu").logmel(torch.from_numpy(wave)[None])[0, 0].numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_istft_inverts_stft():
    wave = torch.randn(2, SAMPLE_RATE)
    fe = FrontEnd("cpu")
    assert torch.allclose(fe.istft(fe.stft(wave), SAMPLE_RATE), wave, atol=1e-5)


@pytest.mark.parametrize("length", [SAMPLE_RATE * 5, 12_345, 1_536, 513])
def test_istft_is_torch_istft_bit_for_bit(length):
    """Our overlap-add replaces torch's ``fold`` for speed; every resynthesised metric
    input and every fitted explainer that resynthesises depends on it being the same
    function: the same bits on masked (inconsistent) spectra, in any batch shape, and
    the same zero padding when asked for more samples than the frames hold."""
    fe = FrontEnd("cpu")
    gen = torch.Generator().manual_seed(length)
    spec = fe.stft(torch.randn(3, length, generator=gen))
    spec = spec * (torch.rand(spec.shape, generator=gen) > 0.4)  # holes: not an STFT
    kwargs = dict(n_fft=N_FFT, hop_length=HOP_LENGTH, window=fe.window, center=True)
    for asked in (length, length + 3 * HOP_LENGTH):
        expected = torch.istft(spec, length=asked, **kwargs)
        assert torch.equal(fe.istft(spec, asked), expected)
    single = fe.istft(spec[1], length)  # (F, T) -> (L,)
    assert torch.equal(single, torch.istft(spec[1], length=length, **kwargs))
    nested = fe.istft(spec[None], length)  # (1, B, F, T) -> (1, B, L)
    assert nested.shape == (1, 3, length) and torch.equal(nested[0], fe.istft(spec, length))


def test_reader_downmixes_and_resamples(tmp_path):
    rate = 16_000
    t = np.arange(rate) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -left + 0.2], axis=1), rate)
    wave = read_audio(path, num_samples=2 * SAMPLE_RATE)
    assert wave.shape == (2 * SAMPLE_RATE,) and wave.dtype == np.float32
    assert np.mean(wave[: SAMPLE_RATE // 2]) == pytest.approx(0.1, abs=0.01)  # (l + r) / 2
    assert not np.any(wave[SAMPLE_RATE + 100 :])  # zero-padded to the asked length


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros(1000, dtype=np.float32), "silent"),
        (np.array([0.1, np.nan] * 500, dtype=np.float32), "NaN"),
    ],
)
def test_reader_refuses_silent_or_non_finite_audio(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    sf.write(path, content, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(BenchError, match=message) as err:
        read_audio(path)
    assert str(path) in str(err.value)


def test_reader_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        read_audio(tmp_path / "nope.wav")
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC not really")
    with pytest.raises(BenchError, match="cannot decode") as err:
        read_audio(corrupt)
    assert "corrupt.flac" in str(err.value)
