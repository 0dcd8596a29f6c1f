"""Fault tier: ``faas up`` as a subprocess, real containers, processes killed under load.

Needs the Docker engine and the runtime images as the end-to-end tier does (the same
``docker_ready`` fixture: a missing engine fails the run under ``FAAS_REQUIRE_DOCKER=1``,
and an agent container left behind fails it at the end)."""

from tests.e2e.conftest import docker, docker_ready

__all__ = ["docker", "docker_ready"]
