"""The web page at ``/ui``: jobs, a job with its histograms, the cluster (server-rendered Jinja2).

- ``session``: the login cookie (a signed key id, never the key) and its CSRF token;
- ``charts``: histogram geometry for the SVG the templates draw;
- ``routes``: the pages, login and logout, cancel and delete; ``install(app)`` adds them.

No imports here: ``api.deps`` imports ``api.ui.session``, and ``api.ui.routes`` imports ``api.deps``.
"""
