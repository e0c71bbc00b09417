"""Names vulture (.ci/run) reports as unused that are used: by name, by a framework, or by a
fixture's side effect. Each group says who uses it. Vulture matches names, not places.

Regenerate candidates with ``.venv/bin/vulture --make-whitelist``; keep each entry justified.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# http.server.BaseHTTPRequestHandler reads these (tests/ops/test_tls_proxy.py)
_.protocol_version
_.do_GET
_.log_message

# fixtures asked for their side effect (set-up, clean-up), never read in the test body
_.aer_enabled_afterwards  # tests/api/test_plugins.py
_.cold_pip_cache  # tests/api/test_plugins.py
_.scratch_data  # tests/fuzz/test_api_schemathesis.py
_.clean_jobs  # tests/fuzz/test_ingest_fuzz.py
_.kwargs  # tests/ops/test_nodes.py: a stand-in with the real function's signature

# public API of qserver-client (client/), for its users
_.health
_.__getattr__  # qserver_client/__init__.py: Python calls it for the lazy Qiskit names (PEP 562)

# Python calls a module's __getattr__ for a name it lacks (client/qserver_client/__init__.py:
# QServerBackend, imported with Qiskit on first use)
_.__getattr__
# Qiskit's BackendV2.__init__ calls it (client/qserver_client/backend.py)
_._default_options

# socketserver.TCPServer reads these (tests/qserver_client/test_client.py: the IPv6 forwarder)
_.address_family
_.daemon_threads

# uvicorn's Server reads it to stop serving (core/monitor.py: Monitor.stop; tests/served.py)
_.should_exit

# TODO(issue 11): no user today, in files other work of issue 11 is changing; delete the code
# (or use it) and remove the entry.
_.JobResults  # core/domain.py
_.current_revision  # core/schema.py

# typer offers each member of an option's Enum as a choice (client/qserver_client/cli/jobs.py: Order)
_.asc
# the web page's templates read it (api/ui/templates/_macros.html: a bar's label position)
_.center
# html.parser.HTMLParser calls these (tests/pages.py)
_.handle_starttag
_.handle_startendtag
_.handle_endtag
_.handle_data
# itsdangerous.TimestampSigner calls it (tests/auth/test_ui_auth.py: an expired session)
_.get_timestamp
