"""The one audio front end every classifier, explainer and metric shares.

Parameters follow the L2I code (method notes §1.3): every clip peak-normalised, 44.1 kHz,
STFT n_fft 1024, hop 512,
Hann window, centred; 128 Slaney mel bands applied to the *magnitude* (the L2I quirk,
kept so that published numbers stay comparable) and converted to dB with ref 1,
amin 1e-10, top_db 80; ``log(1 + |X|)`` for NMF; the input phase kept for resynthesis.
The log-mel is the classifier's: those are the defaults of
:class:`~l2i_bench.types.FeatureSpec`, and a classifier plugin may ask for other bands,
the power instead of the magnitude, or no floor (CNN14 does), on the same STFT grid.
Everything is torch, so features are computed on the GPU when the run has one.
"""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from l2i_bench import ogg, perturb
from l2i_bench.errors import BenchError
from l2i_bench.magnitude import complex_magnitude
from l2i_bench.types import FeatureSpec, MaskDomain

SAMPLE_RATE = 44_100
N_FFT = 1024
HOP_LENGTH = 512
N_MELS = 128
N_FREQS = N_FFT // 2 + 1
TOP_DB = 80.0
AMIN = 1e-10
FRONT_END_VERSION = "2"
"""Bump when what the classifier hears changes (2: clips peak-normalised); it enters the
classifier's cache key, so no model trained on other inputs is ever reused."""


def num_frames(num_samples: int) -> int:
    """STFT frames of a centred STFT (431 for 5 s, 862 for 10 s at 44.1 kHz)."""
    return 1 + num_samples // HOP_LENGTH


def read_audio(path: Path, num_samples: int | None = None) -> np.ndarray:
    """Read a file as mono float32 at :data:`SAMPLE_RATE`, padded/cropped if asked.

    Stereo is averaged; other rates are resampled. Non-finite or silent audio is an
    error, since no classifier or explainer output on it would mean anything.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(
            f"audio file not found: {path}",
            "check --data-dir, or re-run `l2i-bench download` for this dataset",
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BenchError(
            f"cannot decode audio file {path}: {err}",
            "the file is corrupt or not audio; replace it from the original archive",
        ) from err
    wave = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        wave = (
            AF.resample(torch.from_numpy(wave), orig_freq=rate, new_freq=SAMPLE_RATE)
            .numpy()
            .astype(np.float32)
        )
    if not np.all(np.isfinite(wave)):
        raise BenchError(
            f"audio file {path} contains NaN or infinite samples",
            "replace the file from the original archive",
        )
    if not np.any(wave):
        raise BenchError(
            f"audio file {path} is silent (all samples are zero)",
            "remove it from the dataset's listing or replace it; no explanation of "
            "silence means anything",
        )
    if num_samples is not None:
        wave = fit_length(wave, num_samples)
    return np.ascontiguousarray(wave, dtype=np.float32)


def peak_gains(waves: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per-clip gains ``1 / max|x|`` (1 for an all-zero row) of ``(N, L)`` waveforms.

    The L2I code divides every clip by its maximum before any feature (method notes
    §1.3). Two reasons make it matter here: the classifier's log-mel input then does not
    depend on recording level, and ``log(1 + |X|)`` is *not* scale-invariant, so L2I's
    loss weights (alpha = 10, beta = 0.8, tuned on normalised clips) and its log-domain
    masks only mean what the paper says at that level. We use the absolute maximum (the
    authors' signed ``x.max()`` leaves a clip whose negative peak dominates above 1).
    Rows are read ``chunk`` at a time, so a memory-mapped split never has to fit in RAM.
    """
    gains = np.ones(waves.shape[0], dtype=np.float32)
    for start in range(0, waves.shape[0], chunk):
        peak = np.abs(np.asarray(waves[start : start + chunk])).max(axis=1)
        gains[start : start + chunk] = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-30), 1.0)
    return gains


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Zero-pad or crop at the end to exactly ``num_samples``."""
    if wave.shape[-1] >= num_samples:
        return wave[..., :num_samples]
    pad = np.zeros((*wave.shape[:-1], num_samples - wave.shape[-1]), dtype=wave.dtype)
    return np.concatenate([wave, pad], axis=-1)


def write_audio(path: Path, wave: np.ndarray | torch.Tensor, *, compression: float = 0.7) -> None:
    """Write mono audio at :data:`SAMPLE_RATE`, peak-limited so it never clips: 16-bit
    WAV, or Ogg Vorbis at libsndfile's ``compression`` level when ``path`` ends in
    ``.ogg`` (the report's small listenable copies; the same samples give the same
    bytes, see :mod:`l2i_bench.ogg`)."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().float().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 0.999:
        wave = wave * (0.999 / peak)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if Path(path).suffix == ".ogg":
        encoded = io.BytesIO()
        sf.write(
            encoded,
            wave,
            SAMPLE_RATE,
            format="OGG",
            subtype="VORBIS",
            compression_level=compression,
        )
        # libsndfile's random stream serial would make every rebuild differ in bytes
        Path(path).write_bytes(ogg.with_fixed_serial(encoded.getvalue()))
    else:
        sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")


def log_ratio_to_linear_mask(log_magnitude: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """The linear gain that keeps what a ``log1p``-domain ratio mask keeps:
    ``G |X| = expm1(ratio log1p|X|)`` (:func:`l2i_bench.perturb.linear_gain`). For
    display and for explainers that must hand a linear gain to other code; metrics
    use the ratio itself with :mod:`l2i_bench.perturb`."""
    return perturb.linear_gain(torch.expm1(log_magnitude), ratio, MaskDomain.LOG1P)


def mel_to_linear_matrix(mel_basis: torch.Tensor) -> torch.Tensor:
    """``(F, M)`` weights taking a map on the mel grid to STFT bins: each bin averages
    the bands whose filters cover it, weighted by the filters (rows sum to 1), so a bin
    lying wholly in one band gets that band's value and a bin shared by two a blend.
    Bins no filter covers (DC) copy the nearest covered bin. Computed in float64.

    The one mel-to-STFT mapping of the suite: every explainer that decides on the
    classifier's log-mel input (IBA, VIBI, the gradient attributions) reaches the
    listenable STFT mask through it."""
    weights = mel_basis.T.clamp_min(0.0).double()  # (F, M)
    sums = weights.sum(1, keepdim=True)
    covered = (sums[:, 0] > 0).nonzero().flatten()
    if covered.numel() == 0:
        raise BenchError("the front end's mel filterbank is empty", "check l2i_bench.audio")
    out = weights / sums.clamp_min(1e-30)
    for row in (sums[:, 0] <= 0).nonzero().flatten().tolist():
        nearest = covered[(covered - row).abs().argmin()]
        out[row] = out[nearest]
    return out.float()


def mel_filterbank(features: FeatureSpec) -> np.ndarray:
    """``(M, F)`` Slaney mel filters of a classifier's bands on the host's STFT bins; a
    band above the host's Nyquist frequency, or one no STFT bin falls in, is an error
    that names the classifier setting to change."""
    nyquist = SAMPLE_RATE / 2
    fmax = nyquist if features.fmax is None else float(features.fmax)
    if not 0 <= features.fmin < fmax <= nyquist or features.n_mels < 1:
        raise BenchError(
            f"the classifier asks for {features.n_mels} mel bands from {features.fmin:g} to "
            f"{fmax:g} Hz, but the host's audio is at {SAMPLE_RATE} Hz (bands must lie "
            f"between 0 and its Nyquist frequency, {nyquist:g} Hz)",
            "set the classifier plugin's FeatureSpec fmin/fmax within that range (the "
            "host resamples every clip to 44.1 kHz; a model trained at another rate "
            "keeps its bands in Hz)",
        )
    if features.power not in (1.0, 2.0):
        raise BenchError(
            f"the classifier asks for a mel of |X|^{features.power:g}",
            "use power 1 (magnitude) or 2 (power) in its FeatureSpec",
        )
    mel = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=features.n_mels, fmin=features.fmin, fmax=fmax
    )
    empty = np.flatnonzero(mel.sum(axis=1) <= 0)
    if empty.size:
        raise BenchError(
            f"{empty.size} of the classifier's {features.n_mels} mel bands hold no STFT bin "
            f"of the host's grid ({SAMPLE_RATE / N_FFT:.1f} Hz per bin)",
            "use fewer mel bands or a higher fmin in its FeatureSpec",
        )
    return mel


class FrontEnd:
    """STFT, the classifier's log-mel and inverse STFT on a device; one per run.

    ``features`` is the classifier's :class:`~l2i_bench.types.FeatureSpec` (default:
    Kumar et al.'s 128 bands of the magnitude, 80 dB floor)."""

    def __init__(
        self, device: torch.device | str = "cpu", features: FeatureSpec | None = None
    ) -> None:
        self.device = torch.device(device)
        self.features = features if features is not None else FeatureSpec()
        self.window = torch.hann_window(N_FFT, device=self.device)
        mel = mel_filterbank(self.features)  # (M, F) Slaney
        self.mel_basis = torch.from_numpy(mel).float().to(self.device)
        self.mel_to_linear = mel_to_linear_matrix(self.mel_basis).to(self.device)
        """``(F, M)``: see :func:`mel_to_linear_matrix`."""
        self._envelopes: dict[int, torch.Tensor] = {}

    def mel_map_to_linear(self, mel_map: torch.Tensor) -> torch.Tensor:
        """A map on the log-mel grid ``(B, T, M)`` as one on the STFT grid ``(B, F, T)``."""
        return torch.matmul(self.mel_to_linear, mel_map.to(self.device).transpose(1, 2))

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``(B, F, T)`` of waveforms ``(B, L)`` (reflect-padded, centred)."""
        return torch.stft(
            wave.to(self.device),
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveforms ``(B, length)`` from complex STFTs ``(B, F, T)``: ``torch.istft``'s
        values bit for bit (tested), with the overlap-add done as ``N_FFT / HOP_LENGTH``
        strided slice additions instead of ``torch.nn.functional.fold``, which took 86 %
        of ``torch.istft``'s CPU time here (4.5 ms per 5 s clip; 1.6 ms this way).
        With two frames over every sample (hop = half the window), each output is the
        sum of the same two numbers, one rounding in either order, hence the same bits;
        a denser overlap would need the test to say so again. Every perturbation
        metric, and every explainer that resynthesises, goes through it."""
        lead = spec.shape[:-2]  # any leading dimensions, as torch.istft takes (F, T) too
        spec = spec.to(self.device).reshape(-1, *spec.shape[-2:])
        # frames as rows (B, T, N): each hop-long block of every frame is then a view
        frames = torch.fft.irfft(spec.transpose(-1, -2), n=N_FFT, dim=-1) * self.window
        batch, count = frames.shape[0], frames.shape[1]
        total = (count - 1) * HOP_LENGTH + N_FFT
        out = frames.new_zeros(batch, total)
        for k in range(N_FFT // HOP_LENGTH):
            lo = k * HOP_LENGTH
            target = out[:, lo : lo + count * HOP_LENGTH].view(batch, count, HOP_LENGTH)
            target.add_(frames[:, :, lo : lo + HOP_LENGTH])
        start = N_FFT // 2  # centred frames
        end = min(start + length, total)
        wave = out[:, start:end] / self._window_envelope(count)[start:end]
        if wave.shape[-1] < length:
            wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
        return wave.reshape(*lead, length)

    def _window_envelope(self, count: int) -> torch.Tensor:
        """Overlap-added squared window of ``count`` frames (the ISTFT's normaliser)."""
        cached = self._envelopes.get(count)
        if cached is None:
            square = self.window.square()
            cached = square.new_zeros((count - 1) * HOP_LENGTH + N_FFT)
            for k in range(N_FFT // HOP_LENGTH):
                part = square[k * HOP_LENGTH : (k + 1) * HOP_LENGTH].repeat(count)
                cached[k * HOP_LENGTH : k * HOP_LENGTH + count * HOP_LENGTH] += part
            if float(cached[N_FFT // 2 : -(N_FFT // 2)].min()) < 1e-11:
                raise ValueError("window overlap-add is zero somewhere: no inverse STFT")
            self._envelopes[count] = cached
        return cached

    @property
    def n_mels(self) -> int:
        return int(self.mel_basis.shape[0])

    @property
    def floor_db(self) -> float:
        """How far below a clip's peak its log-mel counts as silence: the classifier's
        ``top_db``, or 80 dB (librosa's default) when it clips nothing."""
        top_db = self.features.top_db
        return float(top_db) if top_db is not None else TOP_DB

    def logmel_from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Classifier input ``(B, 1, T, M)`` in dB from linear magnitudes ``(B, F, T)``.

        ``top_db`` clipping is per clip, as librosa's ``power_to_db`` does it.
        """
        magnitude = magnitude.to(self.device)
        if self.features.power != 1.0:
            magnitude = magnitude.square()
        mel = torch.matmul(self.mel_basis, magnitude)  # (B, M, T)
        db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
        if self.features.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.features.top_db)
        return db.transpose(-1, -2).unsqueeze(1)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        return self.logmel_from_magnitude(complex_magnitude(self.stft(wave)))

    def resynthesise(
        self, magnitude: torch.Tensor, like: torch.Tensor, length: int
    ) -> torch.Tensor:
        """Waveforms from new magnitudes with the phase of the complex STFT ``like``."""
        phase = like / (complex_magnitude(like) + 1e-9)
        return self.istft(magnitude.to(phase.dtype) * phase, length)

    def apply_mask(
        self,
        spec: torch.Tensor | perturb.Spectra,
        mask: torch.Tensor,
        length: int,
        domain: MaskDomain | str = MaskDomain.LINEAR,
        *,
        remove: bool = False,
        baseline: str = perturb.SILENCE,
    ) -> torch.Tensor:
        """The listenable waveform of what a mask keeps (or, with ``remove``, of the
        input without it), by the operator of the mask's domain
        (:func:`l2i_bench.perturb.keep` / :func:`~l2i_bench.perturb.remove`)."""
        spectra = (
            spec if isinstance(spec, perturb.Spectra) else perturb.Spectra(spec.to(self.device))
        )
        op = spectra.remove if remove else spectra.keep
        return self.istft(op(mask.to(self.device), domain, baseline), length)

    def logmel_of_masked(
        self,
        spec: torch.Tensor | perturb.Spectra,
        mask: torch.Tensor,
        length: int,
        domain: MaskDomain | str = MaskDomain.LINEAR,
        *,
        remove: bool = False,
        baseline: str = perturb.SILENCE,
    ) -> torch.Tensor:
        """Classifier input after masking, through the waveform as a listener hears it:
        resynthesise and recompute the STFT (no shortcut in the STFT domain, since
        ISTFT-STFT is not an identity for arbitrary masks)."""
        wave = self.apply_mask(spec, mask, length, domain, remove=remove, baseline=baseline)
        return self.logmel(wave)
