"""Errors of the node agent. Each becomes a call's error (type + message) at the edge."""


class AgentError(Exception):
    """Root of the agent's errors; ``kind`` is what the call record shows as error type."""

    kind = "AgentError"


class FunctionNotFound(AgentError):
    kind = "FunctionNotFound"


class RuntimeNotFound(AgentError):
    kind = "RuntimeNotFound"


class ImageNotFound(AgentError):
    kind = "ImageNotFound"


class BadArtifact(AgentError):
    kind = "BadArtifact"


class EngineError(AgentError):
    kind = "EngineError"


class NetworkUnavailable(AgentError):
    """A container asked for network access on a node whose container network is not sealed
    (containers/firewall.py): refused rather than run with a route to the host."""

    kind = "NetworkUnavailable"


class StreamClosed(EngineError):
    """Writing to a container's attached stdin failed: its process is gone. Nothing was
    delivered, so the call can still run elsewhere."""

    kind = "StreamClosed"
