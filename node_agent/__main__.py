import sys

from common.lifecycle import run_service
from common.logs import setup_logging
from node_agent.agent import NodeAgent
from node_agent.settings import AgentSettings


async def _make() -> NodeAgent:
    settings = AgentSettings()
    setup_logging(settings.log_level)
    return NodeAgent(settings)


if __name__ == "__main__":
    sys.exit(run_service(_make))
