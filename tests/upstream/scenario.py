"""Drive QServer with the upstream client `qserver-connect` 0.0.22, unchanged.

Runs in the client's own virtualenv (Python 3.11, grpcio 1.78.0), never imports
QServer code, and prints one JSON object with what it saw. The steps follow the
client's own integration tests (tests/test_jobs_integration.py upstream):

    python scenario.py HOST HTTP_PORT GRPC_PORT {plain|tls} QASM_FILE [--fake]

With --fake: add_plugin('fake-plugin'), a job on fake1, poll get_job_data until it
finishes, get_job_result, get_all_jobs, delete_job, delete_plugin. Always: add_plugin
('aer-plugin') and a job on aer with counts, quasi_dist and expval.
"""

import json
import sys
import time

from qserver_connect import Job, JobConnection, Plugin
from qserver_connect.exceptions import JobNotFound

TERMINAL = ("finished", "failed", "canceled")


def wait(jobs: JobConnection, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = jobs.get_job_data(job_id)
        if data["status"] in TERMINAL or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def main() -> None:
    host, http_port, grpc_port, mode, qasm = sys.argv[1:6]
    secure = mode == "tls"
    jobs = JobConnection(host=host, http_port=int(http_port), grpc_port=int(grpc_port), secure_connection=secure)
    plugins = Plugin(host=host, port=int(http_port), secure_connection=secure)
    seen: dict = {}

    if "--fake" in sys.argv:
        plugins.add_plugin("fake-plugin")
        job_id = jobs.send_job(
            Job(
                {
                    "qasm": qasm,
                    "counts": True,
                    "quasi_dist": False,
                    "expval": False,
                    "simulator": "fake1",
                    "metadata": {},
                }
            )
        )
        data = wait(jobs, job_id)
        result = jobs.get_job_result(job_id)
        listed = []
        cursor = 0
        while True:
            page = jobs.get_all_jobs(cursor)
            if not page:
                break
            listed += [j["id"] for j in page]
            cursor = page[-1]["pointer"]
        jobs.delete_job(job_id)
        try:
            jobs.get_job_data(job_id)
            gone = False
        except JobNotFound:
            gone = True
        plugins.delete_plugin("fake-plugin")
        seen["fake"] = {
            "status": data["status"],
            "error": data.get("error"),
            "counts": result["counts"],
            "listed": job_id in listed,
            "deleted": gone,
        }

    plugins.add_plugin("aer-plugin")
    job_id = jobs.send_job(
        Job(
            {
                "qasm": qasm,
                "counts": True,
                "quasi_dist": True,
                "expval": True,
                "simulator": "aer",
                "metadata": {"shots": 2000, "obs": [[["ZZ", 1.0]], [["XX", 1.0], ["ZI", 0.5]]]},
            }
        )
    )
    data = wait(jobs, job_id)
    result = jobs.get_job_result(job_id) if data["status"] == "finished" else {}
    seen["aer"] = {
        "status": data["status"],
        "error": data.get("error"),
        "counts": result.get("counts"),
        "quasi_dist": result.get("quasi_dist"),
        "expval": result.get("expval"),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
