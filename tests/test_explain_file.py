"""`l2i-bench explain` on a user's own file: audio, figure and JSON that agree."""

from __future__ import annotations

import json
from pathlib import Path

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
    result = explain_file(
        _request(tmp_path, synth_dir, cache_dir, audio, class_name="0"), load_registry()
    )
    wav, figure, record_path = result.paths
    record = json.loads(record_path.read_text())
    names = list(record["class_probabilities"])
    assert record["explained_class"] == names[0]
    assert sum(record["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert record["length_handling"].startswith("cropped from 3.00 s to its loudest 2 s")
    assert record["source_sample_rate"] == rate and record["resampled"] is True
    assert record["training_clip"] == ""
    assert result.summary[0].endswith("; resampled from 22050 Hz")
    predicted = record["predicted_class"]
    assert result.summary[1] == (
        f"predicted: {predicted} (probability {record['class_probabilities'][predicted]:.3f})"
    )
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
    ).paths
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


def test_the_loudest_window_is_explained_not_the_first_seconds():
    """A 5 s recording of 3 s silence then a 1 s burst, for a 2 s classifier: the window
    holds the burst (the old crop kept the first 2 s: silence)."""
    from l2i_bench.explain_file import loudest_window

    wave = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    wave[3 * SAMPLE_RATE : 4 * SAMPLE_RATE] = 0.5
    kept, words = loudest_window(wave, 2 * SAMPLE_RATE)
    assert len(kept) == 2 * SAMPLE_RATE
    assert float(np.sum(kept**2)) == pytest.approx(float(np.sum(wave**2)))
    assert words.startswith("cropped from 5.00 s to its loudest 2 s (2.00-4.00 s)")
    padded, words = loudest_window(wave[: SAMPLE_RATE // 2], 2 * SAMPLE_RATE)
    assert len(padded) == 2 * SAMPLE_RATE and not padded.any()
    assert words == "zero-padded from 0.50 s to the dataset's 2 s"


def test_a_training_clip_is_named_and_warned_about(tmp_path, synth_dir, cache_dir):
    """The synth fold-1 classifier trained on fold 2's clips: a renamed copy of one is
    recognised by its bytes, and the summary warns; a test clip of fold 1 is not."""
    split = load_registry().dataset("synth")(synth_dir).split("1")
    trained = split.train[0]
    copy = tmp_path / "my_recording.flac"
    copy.write_bytes(Path(trained.path).read_bytes())
    result = explain_file(_request(tmp_path, synth_dir, cache_dir, copy), load_registry())
    assert result.record["training_clip"] == f"a training clip of this fold ({trained.clip_id})"
    assert result.summary[-1].startswith(
        f"warning:   this file is a training clip of this fold ({trained.clip_id})"
    )
    test_clip = Path(split.test[0].path)
    result = explain_file(_request(tmp_path, synth_dir, cache_dir, test_clip), load_registry())
    assert result.record["training_clip"] == ""
    assert not any(line.startswith("warning") for line in result.summary)


def test_explain_checks_options_before_training(tmp_path, synth_dir):
    """A misspelt option is refused before a classifier is trained: the cache stays empty."""
    cache = tmp_path / "fresh-cache"
    with pytest.raises(
        BenchError, match=r"random has no option 'coverag' \(did you mean 'coverage'\?\)"
    ):
        explain_file(
            _request(
                tmp_path,
                synth_dir,
                cache,
                synth_dir / "audio" / "f1-c00-00.flac",
                options={"random": {"coverag": "0.3"}},
            ),
            load_registry(),
        )
    assert not cache.exists()


def test_an_unreadable_file_gets_a_fix_about_the_file(tmp_path, synth_dir, cache_dir):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not audio")
    with pytest.raises(BenchError) as err:
        explain_file(_request(tmp_path, synth_dir, cache_dir, bogus), load_registry())
    assert "download" not in err.value.fix
    assert "ffmpeg -i" in err.value.fix and "notes.wav" in err.value.fix
