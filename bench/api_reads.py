"""bench.perf's part d in this process: GET /api/v1/jobs at a deep cursor and GET /job/{id}
with 100 000 old jobs, timed through the app itself (no nginx, no stack).

    .venv/bin/python -m bench.api_reads [--database qserver_bench_reads] [--requests 300]
        [--rounds 3] [--dump FILE] [--drop]

Creates the database if needed, migrates it to head and fills it as bench.perf does (once),
then sends the two requests through httpx's ASGI transport to ``api.app.create_app`` and prints
the p50 (ms) of each per round. ``--dump FILE`` also writes the answers (path, headers, body) of
a fixed set of requests, to compare two revisions' bytes on the same database with ``cmp``.
Numbers on a shared 2-core machine vary by about 30 %: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from api.app import create_app
from bench.perf import fill_old_jobs
from core import schema
from core.settings import Settings

OLD_JOBS = 100_000


def prepare(settings: Settings) -> None:
    """Migrate the database to head and fill it with OLD_JOBS finished jobs, unless it has them."""
    schema.upgrade(settings.database_dsn)
    with psycopg.connect(settings.database_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    if count < OLD_JOBS:
        fill_old_jobs(settings, OLD_JOBS - count)


def targets(settings: Settings, requests: int) -> tuple[int, list[str]]:
    """bench.perf's deep cursor (5000 rows before the newest) and ``requests`` job ids."""
    with psycopg.connect(settings.database_dsn) as conn:
        deep = conn.execute("SELECT pointer FROM jobs ORDER BY pointer DESC OFFSET 5000 LIMIT 1").fetchone()[0]
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM jobs ORDER BY random() LIMIT %s", (requests,))]
    return deep, ids


async def measure(settings: Settings, requests: int, rounds: int, dump: Path | None) -> None:
    """Print the p50 of each request per round; write the answers to ``dump`` first."""
    deep, ids = targets(settings, requests)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:

            async def timed(path: str) -> float:
                started = time.perf_counter()
                response = await http.get(path)
                elapsed = (time.perf_counter() - started) * 1e3
                assert response.status_code == 200, response.text
                return elapsed

            if dump is not None:
                paths = [f"/api/v1/jobs?cursor={cursor}" for cursor in (0, deep, deep + 4990)]
                paths += [f"/api/v1/job/{job_id}" for job_id in ids[:20]]
                with dump.open("wb") as out:
                    for path in paths:
                        response = await http.get(path)
                        headers = sorted(response.headers.items())
                        out.write(f"{path}\n{headers}\n".encode() + response.content + b"\n")
            for job_id in ids[:30]:  # warm: the pool, the prepared statements
                await timed(f"/api/v1/jobs?cursor={deep}")
                await timed(f"/api/v1/job/{job_id}")
            for number in range(rounds):
                lists = [await timed(f"/api/v1/jobs?cursor={deep}") for _ in range(requests)]
                singles = [await timed(f"/api/v1/job/{job_id}") for job_id in ids]
                print(
                    f"round {number}: GET /jobs?cursor= p50 {statistics.median(lists):.2f} ms,"
                    f" GET /job/{{id}} p50 {statistics.median(singles):.2f} ms"
                )


def main() -> None:
    """Prepare the database, measure, and drop it with ``--drop``; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="qserver_bench_reads")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards")
    args = parser.parse_args()
    settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:5432/{args.database}")
    prepare(settings)
    try:
        asyncio.run(measure(settings, args.requests, args.rounds, args.dump))
    finally:
        if args.drop:
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.database)))


if __name__ == "__main__":
    main()
