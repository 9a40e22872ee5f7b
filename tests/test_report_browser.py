"""The web report as a reader's browser shows it: Debian's headless Chromium, driven by
selenium, opens the pages of a report built from the published ``results/synth`` folder
through ``file://`` URLs (as a reader opens it from disk) and checks what a reader would
notice: console errors, broken links and images, leaderboard numbers that differ from
``leaderboard.csv``, a sort that does not sort, audio that does not play.

Needs ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them) and selenium (the ``test`` extra); the
module is skipped without them. A screenshot of the leaderboard is left in
``$L2I_BENCH_ARTIFACTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one Chromium

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
CHROMEDRIVER = CHROMEDRIVER or shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "browser tests need Debian's chromium and chromedriver "
        "(apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    pytest.skip("browser tests need selenium (pip install -e '.[test]')", allow_module_level=True)

from l2i_bench.audio import SAMPLE_RATE, write_audio  # noqa: E402
from l2i_bench.report import build_report  # noqa: E402
from l2i_bench.report.board import HEADLINE  # noqa: E402

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "synth"
HEADER = re.compile(r"^(\S+) [↑↓·]( \[[^\]]+\])?( ✗)?$")  # a metric column of leaderboard.csv
COST_COLUMNS = ("explain_ms_median", "explain_ms_iqr")
WAIT_S = 30


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A copy of the published synth results with its report built once."""
    if not (PUBLISHED / "leaderboard.csv").is_file():
        pytest.skip(f"no published results at {PUBLISHED}")
    copy = tmp_path_factory.mktemp("report-browser") / "synth"
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns("report"))
    if not any((copy / "listen").glob("fold-*/*/*.wav")):
        # listen/ is not tracked in git (.gitignore): a clean clone has none, so write
        # a small stand-in in the runner's layout, one test clip and one overlap mixture
        # with its target stem per explainer.
        _write_listening_examples(copy)
    build_report(copy)
    return copy


@pytest.fixture(scope="module")
def report(results) -> Path:
    return results / "report"


@pytest.fixture(scope="module")
def board(results) -> pd.DataFrame:
    return pd.read_csv(results / "leaderboard.csv")


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT_S)
    yield browser
    browser.quit()


def _open(driver, page: Path) -> None:
    assert page.is_file(), f"{page} was not written"
    driver.get_log("browser")  # drain what earlier pages logged
    driver.get(page.as_uri())


def _metric_headers(board: pd.DataFrame) -> dict[str, str]:
    """Metric name (``fidelity_top1``) -> its CSV header (``fidelity_top1 ↑``)."""
    found = {}
    for header in board.columns:
        match = HEADER.match(header)
        if match:
            found[match.group(1)] = header
    return found


def _shown(column: str, value: float) -> str:
    """The number as the page shows it: three decimals for scores, whole milliseconds
    (one decimal under 10) for the cost columns, an en dash where there is none."""
    if math.isnan(value):
        return "–"
    if column in COST_COLUMNS:
        return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"
    return f"{value:.3f}"


def _write_listening_examples(results: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    noise = 0.1 * rng.standard_normal(t.size)
    inputs = results / "listen" / "fold-1" / "_inputs"  # the layout of l2i_bench.listening
    write_audio(inputs / "f1-c00-00--original.wav", tone + noise)
    write_audio(inputs / "f1-mix-overlap--original.wav", tone + noise)
    write_audio(inputs / "f1-mix-overlap--target.wav", tone)
    for name in pd.read_csv(results / "leaderboard.csv")["explainer"]:
        root = results / "listen" / "fold-1" / str(name)
        write_audio(root / "f1-c00-00--steady_tone.wav", tone * rng.uniform(0.2, 1.0))
        write_audio(root / "f1-mix-overlap--steady_tone.wav", tone + noise * rng.uniform())


# --- tests -------------------------------------------------------------------------------


PAGES = ["index.html", "full.html", "gallery.html", "explainers/l2i.html"]


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_cleanly(driver, report, page):
    """No SEVERE console message (a failed resource load is one), the stylesheet is
    applied, and every link to a file of the report points at a file that exists."""
    _open(driver, report / page)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], f"{page}: console errors {severe}"
    nav = driver.find_element(By.CSS_SELECTOR, "header nav")
    assert nav.value_of_css_property("background-color") == "rgba(31, 45, 61, 1)", (
        f"{page}: assets/report.css not applied"
    )
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]'), a => a.href);"
    )
    local = [h for h in hrefs if h.startswith("file://")]
    assert local, f"{page}: no link to the other pages"
    for href in local:
        target = Path(re.sub(r"^file://", "", href.split("#")[0]))
        assert target.is_file(), f"{page}: broken link {href}"


def test_leaderboard_matches_csv(driver, report, board):
    """One row per explainer of leaderboard.csv in its order, one separator right before
    the reference rows, every headline cell's ``data-value`` the CSV's mean and its text
    that mean as rounded on the page."""
    _open(driver, report / "index.html")
    table = driver.find_element(By.ID, "leaderboard")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    names = [r.get_attribute("data-explainer") for r in rows]
    expected = [str(n) for n in board["explainer"]]
    assert [n for n in names if n] == expected
    separators = [i for i, r in enumerate(rows) if "separator" in r.get_attribute("class")]
    references = board.index[board["reference"].astype(bool)].tolist()
    if references:
        assert len(separators) == 1
        assert names[separators[0] + 1] == expected[references[0]]
    else:
        assert separators == []

    headers = _metric_headers(board)
    headline = []
    for _, _, candidates in HEADLINE:
        chosen = next((c for c in candidates if c in headers), None)
        if chosen is not None:
            headline.append(chosen)
    shown = [
        th.get_attribute("data-column")
        for th in table.find_elements(By.CSS_SELECTOR, "thead th[data-column]")
    ]
    assert shown == headline
    assert "fidelity_top1" in shown  # the synth results have it: the checks below bite

    checked = 0
    for row in rows:
        name = row.get_attribute("data-explainer")
        if not name:
            continue
        csv_row = board.loc[board["explainer"] == name].iloc[0]
        cells = row.find_elements(By.CSS_SELECTOR, "td[data-column]")
        assert [c.get_attribute("data-column") for c in cells] == headline
        for cell in cells:
            column = cell.get_attribute("data-column")
            mean = float(csv_row[headers[column]])
            data_value = cell.get_attribute("data-value")
            text = cell.text.strip()
            if math.isnan(mean):
                assert data_value == "", f"{name} {column}"
                assert text == "–", f"{name} {column}"
                continue
            assert float(data_value) == pytest.approx(mean, rel=1e-9), f"{name} {column}"
            figure = _shown(column, mean)
            assert text.split()[0] == figure, (
                f"{name} {column}: shows {text!r}, the CSV's mean is {mean} ({figure})"
            )
            checked += 1
    assert checked >= len(expected)


@pytest.mark.parametrize("column", ["fidelity_top1", "deletion_auc"])
def test_full_table_sorts_by_clicked_column(driver, report, board, column):
    """A click on a header sorts the rows by that column ascending (empty cells last), a
    second click descending; ties keep their order. Expected: the CSV's explainers
    stably sorted by the CSV's means."""
    _open(driver, report / "full.html")
    table = driver.find_element(By.ID, "full-table")
    assert "sortable" in table.get_attribute("class").split()
    header = table.find_element(By.CSS_SELECTOR, f'thead th[data-column="{column}"]')
    assert header.get_attribute("data-type") == "number"
    means = dict(
        zip(
            board["explainer"].astype(str),
            board[_metric_headers(board)[column]].astype(float),
            strict=True,
        )
    )

    def state() -> tuple[list[str], list[str]]:
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        names = [r.get_attribute("data-explainer") for r in rows]
        values = [
            r.find_element(By.CSS_SELECTOR, f'td[data-column="{column}"]').get_attribute(
                "data-value"
            )
            for r in rows
        ]
        return names, values

    names, _ = state()
    assert names == list(means)  # before any click: the CSV's order

    def empty_last(descending: bool):
        def key(name: str) -> tuple[bool, float]:
            value = means[name]
            if math.isnan(value):
                return (True, 0.0)
            return (False, -value if descending else value)

        return key

    header.click()
    ascending = sorted(means, key=empty_last(False))
    names, values = state()
    assert names == ascending
    numbers = [float(v) for v in values if v != ""]
    assert numbers == sorted(numbers)
    assert values[len(numbers) :] == [""] * (len(values) - len(numbers))  # empties last
    assert "sorted-asc" in header.get_attribute("class").split()

    header.click()
    descending = sorted(ascending, key=empty_last(True))
    names, values = state()
    assert names == descending
    numbers = [float(v) for v in values if v != ""]
    assert numbers == sorted(numbers, reverse=True)
    assert values[len(numbers) :] == [""] * (len(values) - len(numbers))
    assert "sorted-desc" in header.get_attribute("class").split()
    if ascending != list(reversed(ascending)):
        assert names != ascending


def test_gallery_audio_loads_with_its_duration(driver, report, results, board):
    """Every ``<audio>`` is an Ogg file under media/ that Chromium loads (metadata at
    least) with the duration the page states; each explainer with listening examples
    has at least one player."""
    _open(driver, report / "gallery.html")
    assert driver.execute_script(
        "return document.createElement('audio').canPlayType('audio/ogg; codecs=vorbis');"
    ), "this Chromium cannot play Ogg Vorbis"
    assert driver.find_elements(By.TAG_NAME, "audio"), "no <audio> in the gallery"
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('audio'))"
            ".every(a => a.readyState >= 1 || a.error !== null);"
        )
    )
    states = driver.execute_script(
        "return Array.from(document.querySelectorAll('audio'), a => ({"
        "src: a.getAttribute('src'), ready: a.readyState, duration: a.duration,"
        "seconds: a.dataset.seconds, error: a.error ? a.error.code : null}));"
    )
    for state in states:
        assert re.fullmatch(r"media/[^/]+\.ogg", state["src"] or ""), state
        assert state["error"] is None, state
        assert state["ready"] >= 1, state
        assert abs(state["duration"] - float(state["seconds"])) <= 0.05, state

    listened = {p.name for p in (results / "listen").glob("fold-*/*") if p.is_dir()}
    expected = [str(n) for n in board["explainer"] if str(n) in listened]
    assert expected, "no explainer of leaderboard.csv has listening examples"
    for name in expected:
        players = driver.find_elements(By.CSS_SELECTOR, f'.row[data-explainer="{name}"] audio')
        assert players, f"no audio for {name} in the gallery"


@pytest.mark.parametrize("page", PAGES)
def test_images_load(driver, report, page):
    """Every ``<img>`` decoded (``complete`` and a natural width); the leaderboard's
    figures and the gallery's spectrograms are there at all."""
    _open(driver, report / page)
    script = (
        "return Array.from(document.images, i => ({src: i.getAttribute('src'),"
        "complete: i.complete, width: i.naturalWidth}));"
    )
    WebDriverWait(driver, WAIT_S).until(
        lambda d: all(i["complete"] for i in d.execute_script(script))
    )
    images = driver.execute_script(script)
    for image in images:
        assert image["complete"] and image["width"] > 0, f"{page}: {image['src']} did not load"
    if page in ("index.html", "gallery.html"):
        assert images, f"{page}: no images"


def test_leaderboard_screenshot(driver, report, tmp_path):
    """A screenshot of the leaderboard page, kept as a test artifact."""
    _open(driver, report / "index.html")
    driver.find_element(By.ID, "leaderboard")
    folder = Path(os.environ.get("L2I_BENCH_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report-leaderboard.png"
    assert driver.save_screenshot(str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, f"{path}: {len(data)} bytes, a blank page?"
