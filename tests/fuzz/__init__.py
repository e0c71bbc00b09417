"""Hostile-input tests: hypothesis over submissions, a real ingest fed hostile streams, schemathesis over the api."""
