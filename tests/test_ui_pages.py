"""The web page through the whole stack and nginx: a Bell job run for real, its page over httpx
(bars as tall as its counts, its row in the table), and in a real headless browser (Debian's
Chromium) that finds the histogram in the rendered DOM and saves a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.circuits import BELL
from tests.pages import bars, find, table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = 1000


@pytest.fixture(scope="module")
def bell(stack) -> dict:
    """A finished Bell job with counts, a quasi-distribution and <ZZ>, <XX> (seeded), as REST gives it."""
    job = stack.run(
        BELL,
        counts=True,
        quasi_dist=True,
        expval=True,
        metadata={"shots": SHOTS, "seed": 7, "obs": [[["ZZ", 1.0]], [["XX", 1.0]]]},
    )
    assert job["status"] == "finished", job["error"]
    return job


def test_the_job_page_draws_the_bell_counts(stack, bell):
    page = stack.http.get(f"/ui/job/{bell['id']}")
    assert page.status_code == 200, page.text
    counts = bell["results"]["counts"]
    assert set(counts) == {"00", "11"} and sum(counts.values()) == SHOTS
    drawn = bars(page.text, "counts")
    assert set(drawn) == set(counts)
    assert drawn["11"] / drawn["00"] == pytest.approx(counts["11"] / counts["00"], abs=1e-3)
    assert max(drawn.values()) == pytest.approx(240.0)
    quasi = bars(page.text, "quasi")
    assert quasi == pytest.approx(drawn, abs=0.01)  # one simulation: the same shares
    assert table(page.text, "expvals")[1:] == [["1·ZZ", "1"], ["1·XX", "1"]]
    receipt = dict((row[0], row[1]) for row in table(page.text, "receipt"))
    assert receipt["seed"] == "7" and receipt["node_id"] == bell["node_id"]


def test_the_table_through_nginx_has_the_bell_row(stack, bell):
    url, row = "/ui", None
    for _ in range(500):  # the session's stack holds every test's jobs: follow the pager
        page = stack.http.get(url)
        assert page.status_code == 200
        rows = [r for r in find(page.text, "tr") if r.attrs.get("data-id") == bell["id"]]
        if rows:
            row = rows[0]
            break
        url = find(page.text, "a", id="next-page")[0].attrs["href"]
    assert row is not None
    assert "finished" in row.text and "aer" in row.text


def test_a_headless_browser_finds_the_histogram(stack, bell, tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: .ci/install.sh installs it with apt-get, which could not here")
    url = f"{stack.http.base_url}/ui/job/{bell['id']}"
    common = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    drawn = bars(dom, "counts")
    counts = bell["results"]["counts"]
    assert set(drawn) == set(counts)
    assert drawn["11"] / drawn["00"] == pytest.approx(counts["11"] / counts["00"], abs=1e-3)
    assert find(dom, "span", class_="status-finished")

    shot = tmp_path / "ui-job.png"
    subprocess.run(
        [*common, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,1300", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a page, not a blank
    print(f"screenshot of the job page: {shot}")
    if os.environ.get("QSERVER_UI_SCREENSHOT"):  # regenerate the README's picture
        shutil.copyfile(shot, os.environ["QSERVER_UI_SCREENSHOT"])


def test_the_root_redirects_to_the_page_through_nginx(stack):
    response = httpx.get(f"{stack.http.base_url}/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui"
