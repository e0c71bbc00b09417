"""The REST api: FastAPI routes over Postgres (never Ray, never Qiskit)."""
