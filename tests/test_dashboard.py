"""The Grafana dashboard against a real Prometheus: Debian's ``prometheus`` (.ci/install.sh installs
it) scrapes the running test stack every second with monitoring/prometheus.yml's jobs, jobs run,
and every query of monitoring/grafana/dashboards/qserver.json must return data."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ops import endpoints
from ops import stack as stack_ops
from tests.circuits import BELL
from tests.client import Stack
from tests.ops.test_monitoring import MONITORING, dashboard_queries

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
# Grafana's $__rate_interval is at least four scrape intervals: here, scraping every second
RATE_INTERVAL = "15s"


def scrape_config(settings) -> dict:
    """monitoring/prometheus.yml with the test stack's addresses, scraped every second."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("qserver-")
        url = httpx.URL(stack_ops.metrics_url(settings, service))
        job["static_configs"] = [{"targets": [f"{url.host}:{url.port}"]}]
    return config


@pytest.fixture
def prometheus(stack, settings, tmp_path):
    """A Prometheus scraping the test stack; yields its HTTP API's base URL."""
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus is not installed (.ci/install.sh installs it where apt works)")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(settings)))
    port = endpoints.free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    child = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert child.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        child.terminate()
        child.wait(timeout=30)
        log.close()


def query(base: str, expr: str) -> list:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, (expr, answer.text)
    return answer.json()["data"]["result"]


def test_every_dashboard_query_returns_data_while_jobs_run(prometheus, settings):
    stop = threading.Event()
    ran = []

    def run_jobs() -> None:
        with Stack(**endpoints.client_address(settings)) as client:
            while not stop.is_set():
                ran.append(client.run(BELL, counts=True, metadata={"shots": 100})["status"])

    worker = threading.Thread(target=run_jobs, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while len(query(prometheus, 'up{job=~"qserver-.*"} == 1')) < 3:
            assert time.monotonic() < deadline, query(prometheus, "up")
            time.sleep(0.5)
        queries = [expr.replace("$__rate_interval", RATE_INTERVAL) for expr in dashboard_queries()]
        empty = queries
        deadline = time.monotonic() + 90
        while empty and time.monotonic() < deadline:
            time.sleep(1)
            empty = [expr for expr in empty if not query(prometheus, expr)]
    finally:
        stop.set()
        worker.join(timeout=60)
    assert ran and set(ran) == {"finished"}
    assert not empty, f"dashboard queries without data while {len(ran)} jobs ran: {empty}"
    # and the data is the stack's: the jobs ran on aer, the head node is online
    assert query(prometheus, 'qserver_jobs{backend="aer", status="finished"} > 0')
    assert float(query(prometheus, "qserver_nodes_online")[0]["value"][1]) >= 1
