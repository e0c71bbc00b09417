"""``python -m api``: serve the REST api with uvicorn on QSERVER_API_HOST:QSERVER_API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from core.errors import UnsafeSettings
from core.settings import get_settings


def main() -> None:
    """Configure logging, build the app and serve it until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        app = create_app(settings)
    except UnsafeSettings as error:
        logging.getLogger("api").error("refusing to start: %s", error)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=True,
        log_level="info",
        access_log=False,  # nginx logs every request (nginx/logs/access.log); a second line here cost CPU per job
    )


if __name__ == "__main__":
    main()
