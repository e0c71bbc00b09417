"""``python -m ingest``: run the gRPC ingest service with settings from QSERVER_* variables."""

from core import service
from core.settings import get_settings
from ingest.server import serve

if __name__ == "__main__":
    service.run(lambda: serve(get_settings()), "ingest")
