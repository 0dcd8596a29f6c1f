"""`make deploy-test` as a pytest test: the same command, run only with FAAS_REQUIRE_DEPLOY=1.

It makes six systemd hosts, deploys with ansible-playbook and runs the seven checks (about
10 minutes on a 2-core machine: tests/deploy/README.md), so it is off unless asked for.
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
    proc = subprocess.run(
        [sys.executable, "-m", "tests.deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1440,
        check=False,
    )
    summary = proc.stdout[proc.stdout.rfind("==== deploy test summary") :]
    assert proc.returncode == 0, f"{summary or proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
