"""REST ids and cursors through nginx: 400 for malformed input, 404 for unknown ids, never 500."""

from __future__ import annotations

import uuid

import pytest

JOB_ROUTES = ["/api/v1/job/{}", "/api/v1/job/result/{}"]


@pytest.mark.parametrize("route", JOB_ROUTES)
def test_malformed_id_is_400(stack, route):
    response = stack.http.get(route.format("not-a-uuid"))
    assert response.status_code == 400
    assert "not-a-uuid" in response.json()["detail"]


@pytest.mark.parametrize("route", JOB_ROUTES)
def test_unknown_id_is_404(stack, route):
    job_id = uuid.uuid4()
    response = stack.http.get(route.format(job_id))
    assert response.status_code == 404
    assert str(job_id) in response.json()["detail"]


def test_cursor_abc_is_400(stack):
    response = stack.http.get("/api/v1/jobs", params={"cursor": "abc"})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_backends_and_docs_through_nginx(stack):
    backends = stack.http.get("/api/v1/backends").json()
    assert [(b["backend_name"], b["plugin"]) for b in backends] == [
        ("aer", "aer-plugin"), ("aer_gpu", "aer-plugin")
    ]
    assert stack.http.get("/api/v1/backend/aer").json()["backend_name"] == "aer"
    assert stack.http.get("/api/v1/backend/nope").status_code == 404
    docs = stack.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert stack.http.get("/openapi.json").json()["paths"]
    assert stack.http.get("/api/v1/health").json() == {"status": "OK"}
