"""Keeping the containers' network sealed: sealed at the agent's start, checked again every
``network_check_s`` (a firewall reload may remove the rules), each change logged once."""

import logging

from common.logs import fields
from node_agent.containers.docker import Engine
from node_agent.containers.firewall import SealConfig
from node_agent.errors import NetworkUnavailable

log = logging.getLogger(__name__)


class NetworkSeal:
    """``await seal.check(at_start=True)`` once, then ``seal.check`` periodically."""

    def __init__(self, engine: Engine, config: SealConfig, node_id: str) -> None:
        self._engine = engine
        self._config = config
        self._node_id = node_id
        self.sealed: bool | None = None  # None before the first try

    async def check(self, at_start: bool = False) -> None:
        """Seal the containers' network, or check that it still is. A failure is logged (once
        per change) and leaves containers with network refused: the agent runs on for calls
        without network, and retries at each check."""
        seal = self._config
        try:
            changed = await self._engine.seal_network(seal)
        except NetworkUnavailable as err:
            if self.sealed is not False:
                log.error("agent.network_unsealed", extra=fields(node=self._node_id, error=str(err)))
            self.sealed = False
            return
        if at_start or self.sealed is False:
            log.info("agent.network_sealed", extra=fields(node=self._node_id, network=seal.network, bridge=seal.bridge))
        elif changed:  # something (a firewall reload?) removed or changed the rules
            log.warning("agent.network_resealed", extra=fields(node=self._node_id, network=seal.network))
        self.sealed = True
