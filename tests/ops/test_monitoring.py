"""monitoring/ and compose.yml's `monitoring` profile, statically: Prometheus scrapes the ports the
services listen on, Grafana finds its data source and the dashboard, every panel has queries.
(tests/test_dashboard.py runs each query against a real Prometheus and a running stack.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "qserver.json"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def compose_services() -> dict:
    return load(ROOT / "compose.yml")["services"]


def dashboard_queries() -> list[str]:
    """Every query of the shipped dashboard (each panel's targets' expr)."""
    return [
        target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel.get("targets", [])
    ]


def test_prometheus_scrapes_each_service_where_it_listens_in_compose():
    config = load(MONITORING / "prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    default = {name: field.default for name, field in Settings.model_fields.items()}  # not the tests' env
    assert targets == {
        "qserver-api": [f"api:{default['api_port']}"],
        "qserver-ingest": [f"ingest:{default['ingest_monitor_port']}"],
        "qserver-dispatcher": [f"dispatcher:{default['dispatcher_monitor_port']}"],
    }
    services = compose_services()
    env = services["api"]["environment"]
    assert env["QSERVER_API_PORT"] == str(default["api_port"])
    # in their containers ingest and the dispatcher listen where Prometheus can reach them
    assert all(services[name]["environment"]["QSERVER_MONITOR_HOST"] == "0.0.0.0" for name in ("ingest", "dispatcher"))
    assert "QSERVER_INGEST_MONITOR_PORT" not in env and "QSERVER_DISPATCHER_MONITOR_PORT" not in env


def test_monitoring_is_off_unless_its_profile_is_asked_for():
    services = compose_services()
    assert {name for name, service in services.items() if "monitoring" in service.get("profiles", [])} == {
        "prometheus",
        "grafana",
    }
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)


def test_grafana_finds_its_data_source_and_the_dashboard():
    datasource = load(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    provider = load(MONITORING / "grafana" / "provisioning" / "dashboards" / "qserver.yml")["providers"][0]
    mounts = dict(volume.split(":")[:2] for volume in compose_services()["grafana"]["volumes"])
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "qserver"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
    assert len(dashboard_queries()) >= 25


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) is not installed")
def test_promtool_accepts_the_scrape_config(tmp_path):
    proc = subprocess.run(
        ["promtool", "check", "config", str(MONITORING / "prometheus.yml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
