"""``python -m gateway``: settings from ``FAAS_GATEWAY_*`` environment variables."""

import sys

from pydantic import ValidationError

from common.lifecycle import run_service
from common.logs import setup_logging
from gateway.app import Gateway
from gateway.settings import GatewaySettings


def main() -> int:
    try:
        settings = GatewaySettings()
    except ValidationError as err:
        print(f"gateway: refusing to start: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)

    async def make() -> Gateway:
        return Gateway(settings)

    return run_service(make)


if __name__ == "__main__":
    sys.exit(main())
