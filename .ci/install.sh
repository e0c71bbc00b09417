#!/usr/bin/env bash
# Set up this machine for QServer; safe to run again. Used by README's first command and .ci/run.
#   - .venv with Python 3.11, the client (`pip install -e ./client`: the `qserver` command) and
#     the project (`pip install -e '.[dev]'`: the operator's commands of `qserver`, the services)
#   - nginx, Postgres and RabbitMQ from Debian packages where missing; Postgres and RabbitMQ
#     started (without systemd) when nothing answers at the addresses in QSERVER_* settings.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        $SUDO apt-get update -q
        APT_UPDATED=1
    fi
    # RUNLEVEL=1: invoke-rc.d starts nothing; Debian's default nginx site never takes port 80.
    $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -q --no-install-recommends "$@"
}

# --- Python 3.11 and the virtualenv --------------------------------------------------------
PYTHON=${PYTHON:-$(command -v python3.11 || true)}
if [ -z "$PYTHON" ]; then
    apt_install python3.11 python3.11-venv
    PYTHON=$(command -v python3.11)
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv; then
        rm -rf .venv
        apt_install python3.11-venv
        "$PYTHON" -m venv .venv
    fi
fi
# Reinstall only when a pyproject.toml changed since the last install.
STAMP=.venv/.qserver-installed
WANT=$(cat pyproject.toml client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || [ ! -x .venv/bin/qserver ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # qserver-client owns the one `qserver` script (the operator's commands join it through the
    # server's "qserver.commands" entry point); the tests and the benchmarks import it too
    .venv/bin/python -m pip install -q -e ./client -e '.[dev]'
    if [ ! -x .venv/bin/qserver ]; then
        # a .venv from before the client owned the script: uninstalling the old server removed
        # the client's freshly written .venv/bin/qserver (its RECORD listed the same path)
        .venv/bin/python -m pip install -q --no-deps --force-reinstall -e ./client
    fi
    echo "$WANT" > "$STAMP"
fi

# --- nginx -----------------------------------------------------------------------------------
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx
fi

# --- Chromium: the web page's end-to-end test opens a job's page in it, headless ------------
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
    apt_install chromium || echo "install.sh: chromium could not be installed; the browser test will skip" >&2
fi

# --- Prometheus: tests/test_dashboard.py runs the Grafana dashboard's queries against it -------
# (not a service of the stack; a test skips, saying why, where it cannot be installed)
if ! command -v prometheus >/dev/null && [ ! -x /usr/bin/prometheus ]; then
    if apt_install prometheus; then
        # the package enables a system Prometheus on :9090; the test runs its own
        if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now prometheus || true; fi
    else
        echo "install.sh: Debian's prometheus could not be installed; tests/test_dashboard.py will skip" >&2
    fi
fi

# --- Postgres and RabbitMQ: the same code `qserver up` runs ----------------------------------
.venv/bin/python -m ops.prereqs
