"""The report builder on a tiny results folder whose every number is known."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from l2i_bench.audio import SAMPLE_RATE
from l2i_bench.errors import BenchError
from l2i_bench.report import build_report, read_board, terminal_table
from l2i_bench.report.gallery import gain_map

EXPLAINERS = ["a-very-long-explainer-name", "beta", "random"]


def _tiny_results(root: Path) -> Path:
    results = root / "synth"
    board = pd.DataFrame(
        {
            "explainer": EXPLAINERS,
            "reference": [False, False, True],
            "folds": [1, 1, 1],
            "seeds": [1, 1, 1],
            "cells": [1, 1, 1],
            "fidelity_top1 ↑": [0.9375, 0.5, 0.1],
            "fidelity_top1_ci_low": [0.875, 0.4, 0.05],
            "fidelity_top1_ci_high": [0.98, 0.6, 0.15],
            "fidelity_top1_rank": [1, 2, 3],
            "ff_prob_drop_minus_random ↑": [-0.0123, 0.25, 0.0],
            "ff_prob_drop_minus_random_rank": [2, 1, 2],
            "ff_silence_prob_drop ↑ ✗": [0.3, 0.2, 0.1],
            "mask_coverage ·": [0.4, 0.5, 0.2],
            "explain_ms_median ↓ [ms/clip]": [2859.4, 9.25, 16.0],
            "notes": ["", "fidelity_top1: explainer has no surrogate model", ""],
        }
    )
    results.mkdir(parents=True)
    board.to_csv(results / "leaderboard.csv", index=False)
    pd.DataFrame({"fold": ["1"], "seed": [0], "accuracy": [0.975]}).to_csv(
        results / "classifier.csv", index=False
    )
    (results / "runs").mkdir()
    manifest = {
        "run_id": "20261203T000000Z-s0",
        "status": "finished",
        "seeds": [0],
        "config": {"dataset": "synth", "options": {"beta": {"steps": "7"}}},
        "environment": {
            "git": {"sha": "0123456789abcdef", "dirty": False},
            "device_name": "cpu (test)",
            "packages": {"torch": "2.14.1"},
            "command": ["l2i-bench", "run"],
        },
        "plugins": [{"kind": "explainer", "name": "beta", "description": "Beta: a test method"}],
        "wall_seconds": 120.0,
    }
    (results / "runs" / "20261203T000000Z-s0.json").write_text(json.dumps(manifest))
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    for name in EXPLAINERS:
        folder = results / "listen" / "fold-1" / name
        folder.mkdir(parents=True)
        sf.write(folder / "f1-c00-00--original.wav", tone, SAMPLE_RATE, subtype="PCM_16")
        sf.write(folder / "f1-c00-00--steady_tone.wav", 0.5 * tone, SAMPLE_RATE, subtype="PCM_16")
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    results = _tiny_results(tmp_path_factory.mktemp("report"))
    return build_report(results)


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text()))


def test_leaderboard_page_has_the_csv_values_in_order_with_references_apart(built):
    html = built.read_text()
    rows = re.findall(r'<tr data-explainer="([^"]+)" class="(\w+)"', html)
    assert rows == [(EXPLAINERS[0], "contender"), ("beta", "contender"), ("random", "reference")]
    assert html.index('class="separator"') < html.index('data-explainer="random"')
    beta = html[html.index('data-explainer="beta"') : html.index('data-explainer="random"')]
    cell = re.search(r'data-column="fidelity_top1" data-value="([^"]+)">\s*([^<]+)', beta)
    assert float(cell.group(1)) == 0.5 and cell.group(2).strip() == "0.500"
    assert "[0.400, 0.600]" in beta and "#2" in beta
    text = _text(built)
    assert "fold seed accuracy 1 0 0.975" in text  # the classifier explained, at the top
    assert "0123456789ab" in text and "cpu (test)" in text and "torch 2.14.1" in text
    assert "2.0 min" in text


def test_full_table_has_every_column_and_marks_the_invalid_one(built):
    html = (built.parent / "full.html").read_text()
    headers = re.findall(r'<th data-column="([^"]+)" data-type="number"( class="fails")?', html)
    assert [h for h, _ in headers] == [
        "fidelity_top1",
        "ff_prob_drop_minus_random",
        "ff_silence_prob_drop",
        "mask_coverage",
        "explain_ms_median",
    ]
    assert [h for h, fails in headers if fails] == ["ff_silence_prob_drop"]
    assert ">explain_ms_median ↓ [ms/clip]</th>" in html  # the unit from the CSV header
    note = re.search(
        r'<tr data-explainer="beta".*?<td data-column="notes"[^>]*>([^<]*)</td>', html, re.S
    )
    assert note.group(1) == "fidelity_top1: explainer has no surrogate model"
    assert 'src="assets/sort.js"' in html and (built.parent / "assets" / "sort.js").is_file()


def test_explainer_page_states_the_settings_used(built):
    text = _text(built.parent / "explainers" / "beta.html")
    assert "Beta: a test method" in text and "steps=7" in text
    assert re.search(r"fidelity_top1 ↑ 0.500 \[0.400, 0.600\]", text)


def test_gallery_audio_is_small_and_decodes_to_the_clip(built):
    html = (built.parent / "gallery.html").read_text()
    sources = re.findall(r'<audio [^>]*src="([^"]+)"', html)
    assert len(sources) == 1 + len(EXPLAINERS)  # the input, then one per explainer
    for source in sources:
        info = sf.info(built.parent / source)
        assert info.format == "OGG" and info.samplerate == SAMPLE_RATE
        assert info.duration == pytest.approx(2.0, abs=0.01)
        assert (built.parent / source).stat().st_size < 40_000  # vs 176 kB of WAV
    decoded, _ = sf.read(built.parent / sources[1])
    original, _ = sf.read(built.parent / sources[0])
    # the interpretation is the input at half amplitude: Vorbis keeps that to ~1 %
    assert np.sqrt(np.mean(decoded**2) / np.mean(original**2)) == pytest.approx(0.5, abs=0.01)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all((built.parent / i).is_file() for i in images)


def test_gain_map_is_the_amplitude_ratio_where_the_input_is_audible():
    source = np.array([[1.0, 1e-6], [0.5, 0.2]])
    own = np.array([[0.25, 1e-6], [0.75, 0.1]])
    gain = gain_map(own, source, top=0.0)  # 0 dB peak: the 1e-6 bin (-120 dB) is inaudible
    np.testing.assert_allclose(gain, [[0.25, 0.0], [1.0, 0.5]])  # 1.5 clipped to 1


def test_terminal_table_fits_100_columns_and_shows_values_and_ranks(tmp_path):
    results = _tiny_results(tmp_path)
    table = terminal_table(read_board(results / "leaderboard.csv"))
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    beta = next(line for line in lines if line.startswith("beta "))
    assert beta.split() == ["beta", "0.500", "(2)", "0.250", "(1)", "9.2"]
    assert lines.index(next(line for line in lines if "reference rows" in line)) == 4
    assert lines[0].split()[:3] == ["explainer", "fidelity", "↑"]
    assert lines[-1] == (
        "– no value: fidelity: explainer has no surrogate model (notes in leaderboard.csv)"
    )


def test_a_folder_without_a_leaderboard_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match=r"leaderboard.csv not found"):
        build_report(tmp_path)


def test_a_rebuild_without_listen_keeps_the_published_gallery(tmp_path):
    """listen/ is not in git: on a fresh clone the report's own media must survive."""
    import shutil

    results = _tiny_results(tmp_path)
    first = build_report(results)
    sources = re.findall(r'<audio [^>]*src="([^"]+)"', (first.parent / "gallery.html").read_text())
    shutil.rmtree(results / "listen")
    again = build_report(results)
    html = (again.parent / "gallery.html").read_text()
    assert re.findall(r'<audio [^>]*src="([^"]+)"', html) == sources
    assert all((again.parent / s).stat().st_size > 1000 for s in sources)
    assert not list(tmp_path.rglob(".report.building-*"))  # the build folder was swapped in
    # a report built before gallery.json recorded omissions holds a bare list of clips
    record = again.parent / "gallery.json"
    record.write_text(json.dumps(json.loads(record.read_text())["clips"]))
    third = build_report(results)
    assert (third.parent / "gallery.html").read_text() == html


def test_the_gallery_keeps_whole_folds_within_its_audio_budget(tmp_path):
    """Three folds of one 2 s clip with three interpretations each (6 s of audio per
    fold): a 13 s budget keeps folds 1 and 2 whole and states that one clip is left out,
    also when a fresh clone (no listen/) rebuilds it from the published media."""
    import shutil

    results = _tiny_results(tmp_path)
    for fold in ("2", "3"):
        shutil.copytree(results / "listen" / "fold-1", results / "listen" / f"fold-{fold}")
    shutil.copytree(results / "listen", tmp_path / "keep")
    index = build_report(results, max_audio_seconds=13.0)
    html = (index.parent / "gallery.html").read_text()
    assert re.findall(r"<h2>fold (\d)", html) == ["1", "2"]
    assert "1 clip(s) of later folds are left out" in html
    shutil.rmtree(results / "listen")  # a fresh clone: the rebuild says the same
    again = build_report(results, max_audio_seconds=13.0)
    assert (again.parent / "gallery.html").read_text() == html
    shutil.copytree(tmp_path / "keep", results / "listen")
    index = build_report(results, max_audio_seconds=1.0)  # the first fold always stays
    assert re.findall(r"<h2>fold (\d)", (index.parent / "gallery.html").read_text()) == ["1"]


def test_a_rebuild_writes_the_same_bytes(tmp_path):
    """Rebuilding a published report changes no file when nothing it shows changed, so
    git history shows only real changes (Ogg serials and figure metadata are fixed)."""
    results = _tiny_results(tmp_path)
    report = build_report(results).parent
    first = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert any(name.suffix == ".ogg" for name in first)
    shutil.rmtree(report)
    build_report(results)
    second = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert second.keys() == first.keys()
    assert [name for name in first if first[name] != second[name]] == []
