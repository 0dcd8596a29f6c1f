"""The HTTP gateway: registration, invocation (sync/async), call queries; NATS only."""

from gateway.app import Gateway
from gateway.errors import GatewayError
from gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewayError", "GatewaySettings"]
