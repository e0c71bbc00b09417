"""``python -m ingest``: run the gRPC ingest service with settings from QSERVER_* variables."""

import asyncio
import logging

from core.settings import get_settings
from ingest.server import serve


def main() -> None:
    """Configure logging and serve until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(get_settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
