"""Live status through the whole stack (ingest, dispatcher, Ray executors, api, nginx): the real
client reads a job's server-sent events from pending to its end, its failure, its cancel; the
stream of all jobs; a client that goes away closes its stream in the api."""

from __future__ import annotations

import threading
import time

from tests.circuits import BELL
from tests.test_lifecycle import SLOW as NON_CLIFFORD
from tests.test_status_truth import SLOW


def _statuses(events: list[dict]) -> list[tuple[str, str]]:
    return [(event["event"], event["status"]) for event in events]


def _api_log(settings) -> str:
    return (settings.state_dir / "logs" / "api.log").read_text()


def test_a_job_is_read_from_pending_to_finished_with_results(stack) -> None:
    job_id = stack.submit(SLOW, counts=True, metadata={"shots": 3000})  # a few seconds of work
    events = list(stack.events(job_id))
    assert events[0]["event"] == "status" and events[0]["status"] == "pending", events[0]
    assert events[0]["waiting_for"] and events[0]["start_time"] is None
    running = [event for event in events if event["status"] == "running"]
    assert running, _statuses(events)
    assert all(event["node_id"] and event["start_time"] and event["waiting_for"] is None for event in running)
    assert _statuses(events)[-2:] == [("status", "finished"), ("end", "finished")]
    end = events[-1]
    assert sum(end["results"]["counts"].values()) == 3000 and end["results"]["quasi_dist"] is None
    assert end["node_id"] == running[-1]["node_id"] and end["attempts"] == 1
    assert end["time"] == end["finish_time"] and end["start_time"] == running[-1]["start_time"]
    assert end["backend"] == "aer" and end["owner"] is None


def test_a_failed_job_ends_with_its_error(stack) -> None:
    job_id = stack.submit(
        NON_CLIFFORD, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000, "timeout_s": 10}
    )  # it runs for minutes; 10 s leaves a loaded machine time to start its Ray task (the clock runs meanwhile)
    events = list(stack.events(job_id))
    assert ("status", "running") in _statuses(events)
    assert _statuses(events)[-2:] == [("status", "failed"), ("end", "failed")]
    assert events[-1]["error"] == "timed out after 10 s" and "results" not in events[-1]


def test_cancel_gives_canceled(stack) -> None:
    job_id = stack.submit(NON_CLIFFORD, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000})
    events = stack.events(job_id)
    seen = []
    for event in events:
        seen.append(event)
        if event["status"] == "running":
            stack.cancel(job_id)
            break
    seen += list(events)
    assert _statuses(seen)[-2:] == [("status", "canceled"), ("end", "canceled")]
    assert seen[-1]["error"] is None


def test_all_events_carries_a_quick_jobs_end_through_nginx(stack) -> None:
    seen: list[dict] = []
    ids: list[str] = []
    opened, done = threading.Event(), threading.Event()

    def read() -> None:
        stream = stack.all_events(status="finished")
        opened.set()
        for event in stream:
            seen.append(event)
            if ids and event["id"] == ids[0]:
                done.set()
                stream.close()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    opened.wait(10)
    time.sleep(1)  # the request reaches the api
    ids.append(stack.submit(BELL, counts=True, metadata={"shots": 100}))
    assert done.wait(30), seen
    mine = [event for event in seen if event["id"] == ids[0]]
    assert [(e["event"], e["status"]) for e in mine] == [("status", "finished")]
    assert "results" not in mine[0] and mine[0]["node_id"]


def test_a_client_that_goes_away_closes_its_stream_in_the_api(stack, settings) -> None:
    job_id = stack.submit(NON_CLIFFORD, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000})
    events = stack.events(job_id)
    assert next(events)["status"] in ("pending", "running")
    events.close()  # the connection to nginx closes; nginx closes its own to the api
    line = f"GET /api/v1/job/{job_id}/events: event stream closed: the client went away"
    deadline = time.monotonic() + 10
    while line not in _api_log(settings):
        assert time.monotonic() < deadline, "the api did not close the stream"
        time.sleep(0.1)
    stack.cancel(job_id)
