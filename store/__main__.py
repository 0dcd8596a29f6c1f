"""``python -m store``: settings from ``FAAS_STORE_*``, SIGINT/SIGTERM stop it gracefully."""

import sys

from common.lifecycle import run_service
from common.logs import setup_logging
from store.app import Store
from store.settings import StoreSettings


def main() -> int:
    settings = StoreSettings()
    setup_logging(settings.log_level)

    async def make() -> Store:
        return Store(settings)

    return run_service(make)


if __name__ == "__main__":
    sys.exit(main())
