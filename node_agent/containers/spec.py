"""The container a call runs in, cold or warm: one definition of its limits, mounts and user."""

from node_agent.containers.artifacts import Owner
from node_agent.containers.config import ContainerSpec
from node_agent.containers.deps import CA_PATH, ca_env
from schemas import FunctionRecord, Limits, RuntimeSpec

DEFAULT_LIMITS = Limits()
# What a call container runs: the entry script put_archive copied in (containers/scripts.py).
RUN = ["sh", "/faas/run.sh"]


def call_spec(
    image: str,
    runtime: RuntimeSpec,
    function: FunctionRecord | None,
    cmd: list[str],
    labels: dict[str, str],
    node_id: str,
    ca_bundle: str | None,
    owner: Owner,
) -> ContainerSpec:
    """A call container of this node: the function's limits (the defaults for a runtime's
    empty container), stdin attached, the CA bundle mounted, labelled with the node, run as
    ``owner`` (the user the code copied in belongs to; never root on a node: ``call_user``)."""
    lim = function.limits if function else DEFAULT_LIMITS
    return ContainerSpec(
        image=image,
        cmd=cmd,
        env=ca_env(ca_bundle),
        workdir=runtime.path,
        labels={"faas.node": node_id, **labels},
        memory_mb=lim.memory_mb,
        cpus=lim.cpus,
        pids_limit=lim.pids,
        network=lim.network,
        binds=[f"{ca_bundle}:{CA_PATH}:ro"] if ca_bundle else [],
        stdin=True,
        keep_logs=False,
        user=f"{owner[0]}:{owner[1]}",
    )
