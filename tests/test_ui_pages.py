"""The web page through the whole stack and nginx: a Bell job run for real, its page over httpx
(bars as tall as its counts, its row in the table), and in a real headless browser (Debian's
Chromium) that finds the histogram in the rendered DOM and saves a screenshot, and whose page
script follows the event streams: a new job's row appears, a waiting job's page turns canceled."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.browser import CHROMIUM, NO_CHROMIUM, chromium, command
from tests.circuits import BELL
from tests.pages import bars, find, table

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
        pytest.skip(NO_CHROMIUM)
    url = f"{stack.http.base_url}/ui/job/{bell['id']}"
    common = command(tmp_path / "profile")
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


@pytest.fixture
def offline_tag(db: psycopg.Connection, settings) -> Iterator[str]:
    """A tag that only a node gone offline offers: a job asking for it waits, pending (parked)."""
    tag = f"uilive{uuid.uuid4().hex[:6]}"
    node_id = f"ui-gone-{tag}"
    db.execute(
        "INSERT INTO nodes (node_id, address, tags, alive, cpus_total, cpus_free, gpus_total, gpus_free,"
        " memory_total, memory_free, jobs_running) VALUES (%s, '10.255.0.1', %s, false, 1, 0, 0, 0, %s, 0, 0)",
        (node_id, [tag], 2**30),
    )
    time.sleep(2 * settings.cluster_refresh_s + 0.5)  # the dispatcher's view of the nodes has it
    try:
        yield tag
    finally:
        db.execute("DELETE FROM nodes WHERE node_id = %s", (node_id,))


def test_a_browser_follows_jobs_live(stack, offline_tag: str, tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    base = str(stack.http.base_url)
    with chromium(tmp_path / "profile") as page:
        # the table: a job submitted while the page is open gets its row, on top, with its end
        page.open(f"{base}/ui")
        page.wait_for("document.getElementById('live').textContent === 'live'")
        job_id = stack.submit(BELL, counts=True, metadata={"shots": 100})
        row = f"document.querySelector('#jobs tbody tr[data-id=\"{job_id}\"]')"
        page.wait_for(f"{row} && {row}.querySelector('[data-field=status]').textContent === 'finished'")
        assert page.evaluate("document.querySelector('#jobs tbody tr').dataset.id") == job_id
        assert page.evaluate(f"{row}.querySelector('[data-field=backend]').textContent") == "aer"

        # a job's page: waiting, then canceled (the page redraws at the end)
        waiting = stack.submit(BELL, counts=True, metadata={"tags": [offline_tag]})
        deadline = time.monotonic() + 30
        while offline_tag not in (stack.job(waiting)["waiting_for"] or ""):  # parked: it waits for the tag
            job = stack.job(waiting)
            assert time.monotonic() < deadline, (job["status"], job["waiting_for"], job["error"])
            time.sleep(0.1)
        page.open(f"{base}/ui/job/{waiting}")
        page.wait_for("document.getElementById('live').textContent === 'live'")
        assert page.evaluate("document.getElementById('job').dataset.status") == "pending"
        stack.cancel(waiting)
        page.wait_for("document.getElementById('job') && document.getElementById('job').dataset.status === 'canceled'")
        page.wait_for("!document.getElementById('job').dataset.events")  # redrawn by the server: ended
        assert page.evaluate("document.querySelector('#job [data-field=status]').textContent") == "canceled"
