"""The deployment's hosts: Docker containers running systemd and sshd on a network of their own.

Owns the host image (``host/Dockerfile``, built from the runtime images' local Debian base),
the network (a /24 with fixed addresses, so a host that is killed and started again keeps its
address), the containers, and their teardown. Everything it makes carries the label
``faas.deploytest=<run>``; :meth:`Hosts.teardown` removes it all, and the containers the agent
hosts started on the outer Docker engine (label ``faas.node=<node id>``).

Agent hosts get the outer engine's socket (``/var/run/docker.sock``) instead of a Docker of
their own: a test shortcut, whose limits tests/deploy/README.md states.
"""

import ipaddress
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
IMAGE = "faas-deploytest-host:latest"
BASE_IMAGE = "faas-base-python:bookworm"
DOCKER_SOCK = "/var/run/docker.sock"
# Candidate subnets for the test's network: the first one Docker accepts is used.
SUBNETS = tuple(f"172.31.{n}.0/24" for n in range(200, 250))


class HostsError(RuntimeError):
    """A host could not be made or reached."""


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    """Run ``docker <args>`` and return its stdout (stripped)."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise HostsError(f"docker {' '.join(args[:3])}...: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout.strip()


def build_image() -> None:
    """Build the host image (layers cached by Docker: fast when nothing changed)."""
    gid = os.stat(DOCKER_SOCK).st_gid
    docker(
        "build",
        "-q",
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        "--build-arg",
        f"DOCKER_GID={gid}",
        "-t",
        IMAGE,
        str(HERE / "host"),
        timeout=900,
    )


@dataclass
class Host:
    """One host: its inventory name, address, groups and container."""

    name: str
    groups: tuple[str, ...]
    address: str = ""
    container: str = ""
    node_id: str = ""

    @property
    def is_agent(self) -> bool:
        return "agents" in self.groups


@dataclass
class Hosts:
    """The hosts of one run, made by :meth:`start`, removed by :meth:`teardown`."""

    run: str
    layout: Sequence[Host]
    work: Path
    network: str = ""
    public_key: str = ""
    _made: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"faas.deploytest={self.run}"

    def by_name(self, name: str) -> Host:
        return next(h for h in self.layout if h.name == name)

    def in_group(self, group: str) -> list[Host]:
        return [h for h in self.layout if group in h.groups]

    def socket_dir(self, host: Host) -> Path:
        """The agent's socket directory: the same path outside and inside the host container,
        since the outer dockerd bind-mounts it into the function containers."""
        return self.work / "sockets" / host.name

    def start(self) -> None:
        """Make the network and a running container per host, with the SSH key authorised."""
        self._make_network()
        for host in self.layout:
            self._run_host(host)
        for host in self.layout:
            self.wait_booted(host)

    def _make_network(self) -> None:
        name = f"faas-dt-{self.run}"
        for subnet in SUBNETS:
            made = subprocess.run(
                ["docker", "network", "create", "--label", self.label, "--subnet", subnet, name],
                capture_output=True,
                text=True,
                check=False,
            )
            if made.returncode == 0:
                self.network = name
                net = ipaddress.ip_network(subnet)
                for i, host in enumerate(self.layout):
                    host.address = str(net.network_address + 11 + i)
                return
        raise HostsError(f"no free subnet among {SUBNETS[0]}..{SUBNETS[-1]}")

    def _run_host(self, host: Host) -> None:
        host.container = f"faas-dt-{self.run}-{host.name}"
        args = [
            "run",
            "-d",
            "--name",
            host.container,
            "--hostname",
            host.name,
            "--label",
            self.label,
            "--network",
            self.network,
            "--ip",
            host.address,
            # systemd as PID 1, unprivileged: cgroups read-only, /run and /run/lock on tmpfs.
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--memory",
            "1536m",
        ]
        if host.is_agent:
            sockets = self.socket_dir(host)
            sockets.mkdir(parents=True, exist_ok=True)
            args += [
                "-v",
                f"{DOCKER_SOCK}:{DOCKER_SOCK}",
                "-v",
                f"{sockets}:{sockets}",
                # The agent unit's only capability (its sealed-network rules): in the bounding
                # set of the host, or systemd refuses to start the unit.
                "--cap-add",
                "NET_ADMIN",
            ]
        docker(*args, IMAGE)
        self._made.append(host.container)

    def wait_booted(self, host: Host, timeout_s: float = 90) -> None:
        """Wait until systemd is up and sshd listens, then authorise the test's key."""
        state = docker(
            "exec",
            host.container,
            "timeout",
            str(int(timeout_s)),
            "sh",
            "-c",
            "until systemctl is-active -q ssh; do sleep 0.5; done; systemctl is-system-running --wait || true",
            check=False,
            timeout=timeout_s + 10,
        )
        log.info("host %s booted (%s)", host.name, state)
        self.exec(
            host,
            "sh",
            "-c",
            f"echo '{self.public_key}' > /home/debian/.ssh/authorized_keys && "
            "chown debian:debian /home/debian/.ssh/authorized_keys && chmod 600 /home/debian/.ssh/authorized_keys",
        )

    def exec(self, host: Host, *cmd: str, check: bool = True, timeout: float = 120) -> str:
        return docker("exec", host.container, *cmd, check=check, timeout=timeout)

    def kill(self, host: Host) -> None:
        """``docker kill``: the host stops dead. Its function containers on the outer engine
        are removed too, as a real host's would die with it."""
        docker("kill", host.container)
        if host.node_id:
            remove_labelled(f"faas.node={host.node_id}")

    def start_again(self, host: Host) -> None:
        docker("start", host.container)
        self.wait_booted(host)

    def restart(self, host: Host) -> None:
        """``docker restart``: systemd shuts down (services stop gracefully), then boots."""
        docker("restart", "-t", "60", host.container, timeout=120)
        self.wait_booted(host)

    def teardown(self) -> None:
        """Remove the containers, the agents' function containers and the network; never raises."""
        for host in self.layout:
            if host.node_id:
                remove_labelled(f"faas.node={host.node_id}")
        remove_labelled(self.label)
        if self.network:
            docker("network", "rm", self.network, check=False)
        for host in self.layout:
            if host.node_id:
                remove_labelled(f"faas.node={host.node_id}")


def remove_labelled(label: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)


def remove_leftovers() -> None:
    """Hosts, networks and the agents' function containers of earlier runs (--keep, or killed
    before their teardown). Node ids of this test start with ``dt-``."""
    remove_labelled("faas.deploytest")
    fmt = '{{.ID}} {{.Label "faas.node"}}'
    listed = docker("ps", "-a", "--filter", "label=faas.node", "--format", fmt, check=False)
    rows = [line.split() for line in listed.splitlines()]
    ours = [row[0] for row in rows if len(row) == 2 and row[1].startswith("dt-")]
    if ours:
        docker("rm", "-f", "-v", *ours, check=False)
    for net in docker("network", "ls", "-q", "--filter", "label=faas.deploytest", check=False).split():
        docker("network", "rm", net, check=False)
