"""GET /api/v1/jobs before and after the listing that scales (issue 14): 100 jobs' worth of rows.

    .venv/bin/python -m bench.listing [--jobs 2000] [--requests 200]

Starts a stack of its own (bench.perf's ports, database ``qserver_bench_listing``), runs
``--jobs`` small circuits through it (8 clients, counts, every 4th quasi_dist too), then measures
through nginx, ``--requests`` times each (p50, ms; sizes in bytes):

- before: upstream's request, ``GET /jobs?cursor=N``: 20 full rows a page, oldest first; to get
  100 rows a client fetched 5 pages in turn (the size and time of those 5 together);
- after: ``GET /jobs?limit=100&order=desc&fields=id,status,target_simulator,owner,submission_date,
  finish_time``, one request (and ``limit=100`` with full rows, for comparison).

With the server code of before this work on PYTHONPATH (``python bench/listing.py``), the "after"
requests' parameters are ignored there (it answers 20 full rows) and the query plans are
skipped. Prints a table, the plans Postgres chose for a few filters over these jobs
(auto_explain), and writes bench/listing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import PostgresDsn

from bench.perf import bench_settings, small_circuit
from core.settings import Settings
from ops import endpoints
from ops import stack as stack_ops
from qserver_client import Client

LEAN = "id,status,target_simulator,owner,submission_date,finish_time"
DATABASE = "qserver_bench_listing"


def run_jobs(settings: Settings, count: int, clients: int = 8) -> None:
    """``count`` small circuits from ``clients`` threads, each waiting for its results."""
    rng = random.Random(14)
    work = [(small_circuit(rng), i % 4 == 0) for i in range(count)]
    errors: list[BaseException] = []

    def one_client(share: list[tuple[str, bool]]) -> None:
        try:
            with Client(**endpoints.client_address(settings)) as client:
                ids = [client.submit(text, quasi_dist=quasi) for text, quasi in share]
                for job_id in ids:
                    client.wait_result(job_id)
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=one_client, args=(work[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def timed(http: httpx.Client, params: dict[str, Any]) -> tuple[float, httpx.Response]:
    """(ms, the answer) of one GET /api/v1/jobs."""
    started = time.perf_counter()
    response = http.get("/api/v1/jobs", params=params)
    elapsed = (time.perf_counter() - started) * 1e3
    assert response.status_code == 200, response.text
    return elapsed, response


def measure(settings: Settings, requests: int) -> dict[str, Any]:
    """The before and after numbers (see the module's docstring)."""
    with psycopg.connect(settings.database_dsn) as conn:
        pointers = [row[0] for row in conn.execute("SELECT pointer FROM jobs ORDER BY pointer")]
    report: dict[str, Any] = {"jobs": len(pointers)}
    with httpx.Client(base_url=endpoints.client_address(settings)["url"], trust_env=False) as http:
        for _ in range(20):  # warm: connections, prepared statements
            timed(http, {"cursor": 0})
            timed(http, {"limit": 100, "order": "desc", "fields": LEAN})
        rng = random.Random(1)
        one_page, sizes, hundred_ms, hundred_bytes = [], [], [], []
        for _ in range(requests):
            cursor = rng.choice(pointers[: len(pointers) - 100])
            total_ms, total_bytes = 0.0, 0
            for _page in range(5):  # upstream: 20 rows a page, follow the last pointer
                elapsed, response = timed(http, {"cursor": cursor})
                one_page.append(elapsed)
                sizes.append(len(response.content))
                total_ms += elapsed
                total_bytes += len(response.content)
                cursor = response.json()[-1]["pointer"]
            hundred_ms.append(total_ms)
            hundred_bytes.append(total_bytes)
        report["before_page20_p50_ms"] = statistics.median(one_page)
        report["before_page20_bytes"] = statistics.median(sizes)
        report["before_100_rows_p50_ms"] = statistics.median(hundred_ms)
        report["before_100_rows_bytes"] = statistics.median(hundred_bytes)
        for name, params in (
            ("after_lean100", {"limit": 100, "order": "desc", "fields": LEAN}),
            ("after_full100", {"limit": 100, "order": "desc"}),
        ):
            runs = [timed(http, params) for _ in range(requests)]
            report[f"{name}_p50_ms"] = statistics.median(ms for ms, _ in runs)
            report[f"{name}_bytes"] = statistics.median(len(response.content) for _, response in runs)
            report[f"{name}_rows"] = len(runs[-1][1].json())
    return report


async def plans(settings: Settings) -> dict[str, str]:
    """The plan of each listing below, as Postgres ran it over the bench's jobs (auto_explain,
    sent back as notices); empty with the server code of before (no core.store.listing)."""
    try:
        from core import store
        from core.store.listing import Listing, list_jobs_page
    except ImportError:
        return {}
    listings = {
        "desc, lean": Listing(order="desc", limit=100),
        "status=failed,canceled desc": Listing(order="desc", limit=100, statuses=frozenset({"failed", "canceled"})),
        "status=pending asc": Listing(limit=100, statuses=frozenset({"pending"})),
        "backend=aer_gpu desc": Listing(order="desc", limit=100, backend="aer_gpu"),
        "owner=someone desc": Listing(order="desc", limit=100),
    }
    found: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(
        settings.database_dsn, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_timing = off",
            "SET auto_explain.log_level = notice",
        ):
            await conn.execute(setting)
        for name, listing in listings.items():
            notices.clear()
            owner = "someone" if name.startswith("owner") else None
            fields = store.pick_fields([LEAN], store.JOB_FIELDS)
            await list_jobs_page(conn, listing=listing, owner=owner, fields=fields, inline_bytes=0)
            found[name] = "\n".join(notices)
    return found


def main() -> None:
    """Start the stack, run the jobs, measure, print, stop; see the module's docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/listing.json"))
    args = parser.parse_args()
    settings = bench_settings().model_copy(
        update={"database_url": PostgresDsn(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}")}
    )
    stack_ops.down(settings)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    stack_ops.up(settings)
    try:
        started = time.perf_counter()
        run_jobs(settings, args.jobs)
        print(f"{args.jobs} jobs run in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        report = measure(settings, args.requests)
        report["plans"] = asyncio.run(plans(settings))
    finally:
        stack_ops.down(settings)
    for name, value in report.items():
        if name != "plans":
            print(f"{name:<28}{value:>14.2f}" if isinstance(value, float) else f"{name:<28}{value:>14}")
    for name, plan in report["plans"].items():
        print(f"\n{name}:\n{plan}")
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
