"""`python -m ops.composecheck` (.ci/compose-check): compose.yml built and run end to end here."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ops.composecheck import host, images, run
from ops.prereqs import SetupError

ROOT = Path(__file__).resolve().parents[2]
WORK = Path("/var/tmp/qserver-compose-check")  # the CA, dockerd's log, debootstrap's scratch

app = typer.Typer(add_completion=False)


@app.command()
def main(
    workers: Annotated[int, typer.Option(min=1, help="Ray worker containers (RAY_WORKER_REPLICAS).")] = 2,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the stack (and a dockerd started here) running.")] = False,
    rebuild_base: Annotated[bool, typer.Option("--rebuild-base", help="Run debootstrap again.")] = False,
    remove_images: Annotated[
        bool, typer.Option("--remove-images", help="At the end, remove every image made here (the cache too).")
    ] = False,
) -> None:
    """Build compose.yml's images without a registry, run the stack, Bell jobs from both clients, TLS, tear down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    # SIGTERM ends the run through the `finally`s: the stack and a dockerd started here go down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run.Report()
    started = time.monotonic()
    dockerd = None
    ok = False
    try:
        report.timed("docker.io and debootstrap", host.ensure_packages)
        dockerd = report.timed("dockerd", lambda: host.start_daemon(WORK / "dockerd.log"))
        mirror = host.debian_mirror()
        report.facts["plugins"] = report.timed("compose v2 and buildx", lambda: host.ensure_plugins(mirror))
        base = report.timed("debootstrap base", lambda: images.ensure_base(mirror, WORK, rebuild=rebuild_base))
        names = images.upstream_names(ROOT)
        report.facts["stand-ins"] = report.timed("stand-ins", lambda: images.ensure_standins(names, base, WORK))
        run.run_stack(ROOT, WORK, report, workers=workers, keep=keep)
        ok = True
    except (SetupError, run.CheckFailed) as error:
        print(f"[compose-check] FAILED: {error}", file=sys.stderr)
    finally:
        if remove_images and not keep:
            report.facts["removed images"] = images.remove_images(list(run.IMAGES.values()))
        if dockerd is not None and not keep:
            host.stop_daemon(dockerd)
        wall = time.monotonic() - started
        print(json.dumps({"ok": ok, "wall_s": round(wall, 1), **report.__dict__}, indent=2, default=str))
        print(f"[compose-check] {'PASSED' if ok else 'FAILED'} in {wall / 60:.1f} min")
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
