"""``python -m dispatcher``: run the dispatcher with settings from QSERVER_* variables."""

from core import service
from core.settings import get_settings
from dispatcher.service import serve

if __name__ == "__main__":
    service.run(lambda: serve(get_settings()), "dispatcher")
