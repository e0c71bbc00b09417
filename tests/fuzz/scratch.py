"""The scratch database of the hostile-input tests: one random name per test process.

A module-level name (not a fixture's) because the schemathesis test builds its app, and so
its settings, when pytest collects it; ``conftest.fuzz_dsn`` creates and drops the database.
"""

from __future__ import annotations

import uuid

SERVER = "postgresql://postgres@127.0.0.1:5432"
NAME = f"qserver_fuzz_{uuid.uuid4().hex[:12]}"  # other sessions share the server
DSN = f"{SERVER}/{NAME}"
