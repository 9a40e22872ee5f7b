"""`l2i-bench explain` on a user's own file: audio, figure and JSON that agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from l2i_bench.audio import SAMPLE_RATE
from l2i_bench.errors import BenchError
from l2i_bench.explain_file import ExplainRequest, explain_file
from l2i_bench.registry import load_registry


def _request(tmp_path, synth_dir, cache_dir, audio, **kw) -> ExplainRequest:
    base = dict(
        audio=audio,
        explainer="random",
        dataset="synth",
        fold="1",
        data_dir=synth_dir,
        out=tmp_path / "out",
        device="cpu",
        cache_dir=cache_dir,
        classifier={"epochs": 2},
        show_progress=False,
    )
    base.update(kw)
    return ExplainRequest(**base)


def test_explains_a_longer_stereo_file_at_another_rate(tmp_path, synth_dir, cache_dir):
    rate = 22_050
    t = np.arange(3 * rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 880 * t)
    audio = tmp_path / "mine.wav"
    sf.write(audio, np.stack([tone, tone], axis=1), rate)
    wav, figure, record_path = explain_file(
        _request(tmp_path, synth_dir, cache_dir, audio, class_name="0"), load_registry()
    )
    record = json.loads(record_path.read_text())
    names = list(record["class_probabilities"])
    assert record["explained_class"] == names[0]
    assert sum(record["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert record["length_handling"].startswith("cropped from 3.00 s")
    out, out_rate = sf.read(wav)
    assert out_rate == SAMPLE_RATE and len(out) == 2 * SAMPLE_RATE
    assert figure.stat().st_size > 10_000


def test_unknown_class_and_silent_file_are_clear_errors(tmp_path, synth_dir, cache_dir):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(BenchError, match="silent"):
        explain_file(_request(tmp_path, synth_dir, cache_dir, silent), load_registry())
    loud = tmp_path / "loud.wav"
    sf.write(loud, 0.1 * np.ones(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(BenchError, match="not a class"):
        explain_file(
            _request(tmp_path, synth_dir, cache_dir, loud, class_name="kazoo"), load_registry()
        )


CHEAP = {
    "integrated-gradients": {"steps": "4"},
    "smoothgrad": {"samples": "3"},
    "gradient-shap": {"samples": "3", "background": "4"},
    "occlusion": {"stride_frames": "16", "stride_mels": "16"},
    "lmac": {"epochs": "1"},
    "wam-ig": {"steps": "3"},
    "wam-sg": {"samples": "3"},
}


@pytest.mark.parametrize(
    "name",
    [
        "saliency",
        "integrated-gradients",
        "smoothgrad",
        "gradient-shap",
        "occlusion",
        "gradcam",
        "lmac",
        "wam-ig",
        "wam-sg",
    ],
)
def test_each_new_explainer_explains_a_file(tmp_path, synth_dir, cache_dir, name):
    """The plugin path carries each method through `explain` (each method's values are
    tested in its own module): the record names the method and the predicted class, and
    the interpretation is a non-silent masked part of the peak-normalised input. Bound:
    a gain in [0, 1] per bin cannot raise a frame's energy, and the Hann overlap-add
    (sum of squared windows between 0.5 and 1 at 50 % overlap) at most doubles the total
    (Cauchy-Schwarz), so the energy ratio lies in (0, 2]."""
    clip = synth_dir / "audio" / "f1-c00-00.flac"  # a test clip of fold 1
    wav, *_, record_path = explain_file(
        _request(
            tmp_path,
            synth_dir,
            cache_dir,
            clip,
            explainer=name,
            options={name: CHEAP.get(name, {})},
        ),
        load_registry(),
    )
    record = json.loads(record_path.read_text())
    probs = record["class_probabilities"]
    assert record["explainer"] == name
    assert record["explained_class"] == max(probs, key=probs.get)
    source, _ = sf.read(clip)
    source = source / np.abs(source).max()  # the classifier hears the clip peak-normalised
    out, _ = sf.read(wav)
    ratio = float(np.sum(out**2) / np.sum(source[: len(out)] ** 2))
    assert 0.0 < ratio <= 2.0, ratio
    assert 0.0 < record["mask_mean"] < 1.0
