"""The web page with authentication off (the api in-process over real Postgres): the jobs table,
a job's histograms and facts, cancel and delete through the page, the cluster page, errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from core.domain import ResultType
from tests.api.conftest import MakeJob
from tests.pages import bars, find, parse, table

GIB = 2**30


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own (its own cookies), following no redirects."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def table_rows(browser: httpx.AsyncClient, wanted: set[str], pages: int = 200) -> dict[str, dict[str, str]]:
    """{job id: {field: text}} of the table's rows for the ``wanted`` ids, following the pager."""
    found: dict[str, dict[str, str]] = {}
    url = "/ui"
    for _ in range(pages):
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        for row in find(page.text, "tr"):
            if row.attrs.get("data-id") in wanted:
                cells = {
                    e.attrs["data-field"]: e.text.strip()
                    for e in parse(page.text)
                    if "data-field" in e.attrs and row in e.parents
                }
                found[row.attrs["data-id"]] = cells
        nxt = find(page.text, "a", id="next-page")
        if wanted <= set(found) or not nxt:
            return found
        url = nxt[0].attrs["href"]
    return found


async def test_root_redirects_to_the_page(browser):
    response = await browser.get("/")
    assert response.status_code == 307 and response.headers["location"] == "/ui"


async def test_the_table_has_a_row_per_job_with_its_status_backend_and_times(browser, make_job: MakeJob):
    made = {
        await make_job(status="pending"): "pending",
        await make_job(status="running"): "running",
        await make_job(status="finished", results={"counts": {"00": 3}}): "finished",
        await make_job(status="failed"): "failed",
    }
    rows = await table_rows(browser, {str(i) for i in made})
    assert set(rows) == {str(i) for i in made}
    for job_id, status in made.items():
        row = rows[str(job_id)]
        assert row["status"] == status
        assert row["backend"] == "aer"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row["submitted"])
    page = (await browser.get("/ui")).text
    assert not find(page, "form", action="/ui/logout")  # authentication off: nobody to log out
    assert "authentication off" in page


async def test_the_table_is_newest_first_and_pages_back_without_gaps(browser, make_job: MakeJob):
    made = [str(await make_job(status="pending")) for _ in range(55)]
    first = await browser.get("/ui")
    ids = [row.attrs["data-id"] for row in find(first.text, "tr") if "data-id" in row.attrs]
    assert ids[:50] == made[::-1][:50]  # the newest 50, newest first
    older = find(first.text, "a", id="next-page")[0].attrs["href"]
    second = await browser.get(older)
    more = [row.attrs["data-id"] for row in find(second.text, "tr") if "data-id" in row.attrs]
    assert more[:5] == made[::-1][50:]
    assert not set(ids) & set(more)
    assert find(second.text, "a", id="first-page")[0].attrs["href"] == "/ui"
    assert find(first.text, "table", id="jobs")[0].attrs["data-prepend"] == "true"  # live rows go on top
    assert find(second.text, "table", id="jobs")[0].attrs["data-prepend"] == "false"


async def test_the_table_filters_by_status_and_backend(browser, make_job: MakeJob):
    failed = str(await make_job(status="failed"))
    pending = str(await make_job(status="pending"))
    page = (await browser.get("/ui?status=failed")).text
    rows = [r for r in find(page, "tr") if "data-id" in r.attrs]
    assert failed in {r.attrs["data-id"] for r in rows} and pending not in {r.attrs["data-id"] for r in rows}
    assert {row[1] for row in table(page, "jobs")[1:]} == {"failed"}
    assert find(page, "option", value="failed")[0].attrs.get("selected") is not None
    assert find(page, "table", id="jobs")[0].attrs["data-statuses"] == "failed"
    none = (await browser.get("/ui?backend=no-such-backend")).text
    assert "No job matches." in find(none, "table", id="jobs")[0].text
    bad = await browser.get("/ui?status=done")
    assert bad.status_code == 400 and "status: unknown status 'done'" in find(bad.text, "p", id="error-message")[0].text


async def test_a_finished_jobs_histogram_has_bars_as_tall_as_its_counts(browser, make_job: MakeJob):
    counts = {"00": 512, "11": 384, "01": 64, "10": 40}
    job_id = await make_job(
        status="finished",
        result_types=(ResultType.COUNTS, ResultType.QUASI_DIST, ResultType.EXPVAL),
        metadata={"shots": 1000, "obs": [[["ZZ", 1.0]], [["XX", 0.5], ["YY", -0.5]]]},
        results={
            "counts": counts,
            "quasi_dist": {"0": 0.512, "3": 0.384, "1": 0.064, "2": 0.04},
            "expval": [0.8, -0.25],
        },
    )
    page = await browser.get(f"/ui/job/{job_id}")
    assert page.status_code == 200, page.text
    drawn = bars(page.text, "counts")
    assert list(drawn) == ["00", "01", "10", "11"]  # bitstring order
    tallest = drawn["00"]
    assert tallest == pytest.approx(240.0)
    for outcome, count in counts.items():
        assert drawn[outcome] / tallest == pytest.approx(count / 512, abs=1e-3), outcome
    quasi = bars(page.text, "quasi")
    assert quasi == pytest.approx({key: drawn[key] for key in ("00", "01", "10", "11")}, abs=0.01)
    assert "Counts: 4 outcomes of 1,000 shots." in " ".join(
        find(page.text, "figure", id="histogram-counts")[0].text.split()
    )
    ticks = [
        t.text
        for t in find(page.text, "text", class_="tick")
        if any(p.attrs.get("id") == "histogram-counts" for p in t.parents)
    ]
    assert ticks == ["0", "200", "400"]  # round steps up to the largest count
    assert table(page.text, "expvals") == [["Observable", "Value"], ["1·ZZ", "0.8"], ["0.5·XX + -0.5·YY", "-0.25"]]
    facts = find(page.text, "table", id="facts")[0].text
    assert "aer" in facts and "1,000" in facts and "node-1" in facts
    assert find(page.text, "form", id="delete-form") and not find(page.text, "form", id="cancel-form")
    assert not find(page.text, "article", id="job")[0].attrs.get("data-events")  # ended: no live stream


async def test_many_outcomes_show_the_largest_and_say_so(browser, make_job: MakeJob):
    counts = {format(i, "07b"): i + 1 for i in range(100)}  # 100 outcomes, 0000000 least
    job_id = await make_job(status="finished", results={"counts": counts})
    page = (await browser.get(f"/ui/job/{job_id}")).text
    drawn = bars(page, "counts")
    assert len(drawn) == 32
    assert list(drawn)[:3] == [format(99, "07b"), format(98, "07b"), format(97, "07b")]  # largest first
    assert min(int(k, 2) for k in drawn) == 68
    assert drawn[format(68, "07b")] / drawn[format(99, "07b")] == pytest.approx(69 / 100, abs=1e-3)
    caption = find(page, "figure", id="histogram-counts")[0]
    assert caption.attrs["data-outcomes"] == "100" and caption.attrs["data-shown"] == "32"
    shown = sum(range(69, 101)) / sum(range(1, 101))
    assert f"Showing the 32 largest of 100 outcomes ({shown * 100:.1f} % of the total)" in " ".join(
        caption.text.split()
    )


async def test_a_failed_job_shows_its_error_and_a_pending_one_its_wait(browser, make_job: MakeJob):
    failed = await make_job(status="failed", error="the circuit does not parse: line 3")
    page = (await browser.get(f"/ui/job/{failed}")).text
    assert find(page, "pre", id="job-error")[0].text == "the circuit does not parse: line 3"
    assert not find(page, "figure")
    pending = await make_job(status="pending")
    page = (await browser.get(f"/ui/job/{pending}")).text
    article = find(page, "article", id="job")[0]
    assert article.attrs["data-events"] == f"/api/v1/job/{pending}/events"
    assert "the queue" in find(page, "td", data_field="waiting_for")[0].text
    assert find(page, "form", id="cancel-form")


async def test_cancel_and_delete_through_the_page(browser, make_job: MakeJob, db: psycopg.Connection):
    job_id = await make_job(status="running")
    response = await browser.post(f"/ui/job/{job_id}/cancel")
    assert response.status_code == 303 and response.headers["location"] == f"/ui/job/{job_id}"
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"] == "canceled"
    again = await browser.post(f"/ui/job/{job_id}/cancel")
    assert again.status_code == 409 and again.headers["content-type"].startswith("text/html")
    assert "canceled" in find(again.text, "p", id="error-message")[0].text

    response = await browser.post(f"/ui/job/{job_id}/delete")
    assert response.status_code == 303 and response.headers["location"] == f"/ui?deleted={job_id}"
    assert db.execute("SELECT count(*) AS n FROM jobs WHERE id = %s", (job_id,)).fetchone()["n"] == 0
    shown = await browser.get(response.headers["location"])
    assert str(job_id) in find(shown.text, "p", id="deleted")[0].text
    gone = await browser.get(f"/ui/job/{job_id}")
    assert gone.status_code == 404 and f"job {job_id} not found" in gone.text


async def test_deleting_a_running_job_is_refused_on_the_page(browser, make_job: MakeJob, db):
    job_id = await make_job(status="running")
    response = await browser.post(f"/ui/job/{job_id}/delete")
    assert response.status_code == 409, response.text
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"] == "running"


@pytest.mark.parametrize("path", ["/ui/job/not-a-uuid", "/ui/job/1234"])
async def test_a_malformed_job_id_is_a_400_page(browser, path):
    response = await browser.get(path)
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert find(response.text, "p", id="error-message")


async def test_an_unknown_job_is_a_404_page(browser):
    job_id = uuid.uuid4()
    response = await browser.get(f"/ui/job/{job_id}")
    assert response.status_code == 404
    assert find(response.text, "p", id="error-message")[0].text == f"job {job_id} not found"


async def test_a_bad_cursor_is_a_400_page(browser):
    response = await browser.get("/ui?cursor=-1")
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")


@pytest.fixture
def nodes(db: psycopg.Connection) -> Iterator[list[str]]:
    """Two nodes of our own (one alive, one gone), removed afterwards."""
    ids = [f"ui-alive-{uuid.uuid4().hex[:6]}", f"ui-gone-{uuid.uuid4().hex[:6]}"]
    rows = [
        (ids[0], "192.168.7.10", "bench", ["cpu", "uitag"], True, 8.0, 6.0, 1.0, 1.0, 32 * GIB, 20 * GIB, 1),
        (ids[1], "192.168.7.11", None, ["uigone"], False, 4.0, 0.0, 0.0, 0.0, 8 * GIB, 0, 0),
    ]
    for row in rows:
        db.execute(
            "INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total,"
            " gpus_free, memory_total, memory_free, jobs_running) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            row,
        )
    try:
        yield ids
    finally:
        db.execute("DELETE FROM nodes WHERE node_id = ANY(%s)", (ids,))


async def test_the_cluster_page_shows_nodes_tags_and_what_runs_where(browser, nodes, make_job: MakeJob):
    running = await make_job(status="running", node_id=nodes[0])
    page = await browser.get("/ui/cluster")
    assert page.status_code == 200
    rows = {row.attrs["data-node"]: row for row in find(page.text, "tr") if "data-node" in row.attrs}
    assert set(nodes) <= set(rows)
    alive = rows[nodes[0]].text
    assert "192.168.7.10" in alive and "cpu, uitag" in alive and "32.0 GiB (20.0 GiB)" in alive and "8 (6)" in alive
    assert rows[nodes[1]].has_class("gone")
    where = find(page.text, "ul", data_node=nodes[0])[0]
    assert str(running)[:8] in where.text
    tags = {t.text: t.has_class("offline") for t in find(page.text, "span", class_="tag")}
    assert tags["uitag"] is False and tags["uigone"] is True
    assert "aer" in find(page.text, "table", id="backends")[0].text


async def test_the_pages_load_nothing_from_another_origin(browser, make_job: MakeJob):
    job_id = await make_job(status="finished", results={"counts": {"0": 1}})
    for path in ("/ui", f"/ui/job/{job_id}", "/ui/cluster"):
        page = (await browser.get(path)).text
        for element in parse(page):
            for name in ("src", "href"):
                value = element.attrs.get(name, "")
                assert not re.match(r"(https?:)?//", value), (path, element.tag, value)
    script = await browser.get("/ui/static/ui.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert (await browser.get("/ui/static/ui.css")).status_code == 200


async def test_the_pages_are_not_in_the_openapi_schema(browser):
    paths = (await browser.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
