"""`make deploy-test` as a pytest test: the same command, run only with FAAS_REQUIRE_DEPLOY=1
(which `make test` sets).

It makes six systemd hosts, deploys with ansible-playbook and runs the eight checks (about
7 minutes on a 2-core machine: tests/deploy/README.md), so a bare pytest leaves it out.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1500)
def test_the_deployment_passes_every_check() -> None:
    if os.environ.get("FAAS_REQUIRE_DEPLOY") != "1":
        pytest.skip("the deploy test runs with FAAS_REQUIRE_DEPLOY=1 (or: make deploy-test)")
    # SIGTERM, not SIGKILL, past the deadline: the deploy test then removes its hosts.
    with subprocess.Popen(
        [sys.executable, "-m", "tests.deploy"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=1380)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=100)
    summary = out[out.rfind("==== deploy test summary") :]
    assert proc.returncode == 0, f"{summary or out[-4000:]}\n{err[-4000:]}"
