"""Metrics and health of a running stack: what /metrics says after real jobs and refusals, each
service's health answer, `qserver status`, and that nginx does not serve /metrics."""

from __future__ import annotations

import grpc
import httpx
import pytest

from ops import endpoints
from ops import stack as stack_ops
from tests.circuits import BELL
from tests.client import chunks, properties
from tests.scrape import has, parse, value


def scrape(url: str) -> dict:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


@pytest.fixture
def urls(settings):
    return {name: stack_ops.metrics_url(settings, name) for name in ("api", "ingest", "dispatcher")}


def test_finished_bell_jobs_are_counted_by_backend_and_timed(stack, urls):
    scrape(urls["api"])  # the api counts the jobs that end after its first scrape
    api_before, ingest_before = scrape(urls["api"]), scrape(urls["ingest"])
    jobs = 4
    for _ in range(jobs):
        assert stack.run(BELL, counts=True, metadata={"shots": 100})["status"] == "finished"
    api, ingest = scrape(urls["api"]), scrape(urls["ingest"])

    def delta(after, before, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(api, api_before, "qserver_jobs", backend="aer", status="finished") == jobs
    assert delta(api, api_before, "qserver_jobs_ended_total", backend="aer", status="finished") == jobs
    assert delta(api, api_before, "qserver_job_queue_wait_seconds_count", backend="aer") == jobs
    assert delta(api, api_before, "qserver_job_run_seconds_count", backend="aer") == jobs
    # a Bell job waits and runs for milliseconds: every one within the 10 s bucket
    assert delta(api, api_before, "qserver_job_run_seconds_bucket", backend="aer", le="10.0") == jobs
    assert delta(ingest, ingest_before, "qserver_submissions_total", backend="aer", outcome="queued") == jobs
    # the head node, online, with the CPUs and memory Ray gave it
    assert value(api, "qserver_nodes_online") >= 1
    assert value(api, "qserver_node_cpus") >= 1 and value(api, "qserver_node_memory_bytes") > 2**28


def test_a_refused_submission_is_counted_with_its_reason(stack, urls):
    before = scrape(urls["ingest"])
    with pytest.raises(grpc.RpcError) as refused:
        stack.add_job_stream([properties(counts=True, backend="nope"), *chunks(BELL)])
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError):
        stack.add_job_stream([properties(counts=True, metadata={"shots": 0}), *chunks(BELL)])
    after = scrape(urls["ingest"])
    for reason in ("backend_not_found", "invalid_job"):
        labels = {"reason": reason}
        counted = value(after, "qserver_submission_refusals_total", **labels)
        assert counted - value(before, "qserver_submission_refusals_total", **labels) == 1, reason
    # every reason is exported from the start
    assert has(after, "qserver_submission_refusals_total", reason="too_many_pending")


def test_the_dispatcher_exports_the_queue_and_what_it_holds(stack, urls, settings):
    samples = scrape(urls["dispatcher"])
    assert has(samples, "qserver_queue_messages", queue=settings.queue_name)
    assert has(samples, "qserver_queue_messages", queue=f"{settings.queue_name}.dead")
    assert value(samples, "qserver_queue_consumers", queue=settings.queue_name) == 1
    assert value(samples, "qserver_dispatcher_ready") == 1
    assert value(samples, "qserver_dispatcher_warm_executors") >= 1
    assert has(samples, "qserver_dispatcher_task_failures_total", task="cluster")
    assert value(samples, "process_cpu_seconds_total") > 0


def test_every_service_is_healthy_and_status_says_so(stack, settings):
    for name in ("api", "ingest", "dispatcher"):
        body = endpoints.checks_health(stack_ops.health_url(settings, name))
        assert body["status"] == "OK" and set(body["checks"].values()) == {"ok"}, (name, body)
    dispatcher = endpoints.checks_health(stack_ops.health_url(settings, "dispatcher"))
    assert set(dispatcher["checks"]) == {"stage", "broker", "ray", "event_loop"}
    parts = {part.name: part for part in stack_ops.status(settings)}
    for name in ("ingest", "api", "dispatcher"):
        assert parts[name].state == "running" and parts[name].healthy, parts[name]
        assert parts[name].detail.startswith("healthy; metrics: http://"), parts[name].detail


def test_nginx_does_not_serve_the_metrics(stack, settings):
    public = endpoints.client_address(settings)["url"]
    assert httpx.get(f"{public}/metrics", timeout=10).status_code == 404
    assert httpx.get(f"{public}/api/v1/health/ready", timeout=10).json()["status"] == "OK"
