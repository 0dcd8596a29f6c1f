"""``python -m store``: settings from ``FAAS_STORE_*``, SIGINT/SIGTERM stop it gracefully."""

import os
import sys

from common.lifecycle import run_service
from common.logs import setup_logging
from store.app import Store
from store.settings import StoreSettings


def lower_priority(nice: int) -> None:
    """At least ``nice``, before any thread starts (Linux: threads inherit it; the setting
    applies to the calling thread only)."""
    if nice > 0:
        os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))


def main() -> int:
    settings = StoreSettings()
    setup_logging(settings.log_level)
    lower_priority(settings.nice)

    async def make() -> Store:
        return Store(settings)

    return run_service(make)


if __name__ == "__main__":
    sys.exit(main())
