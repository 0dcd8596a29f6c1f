"""Children armed with die_with_parent end when their parent is SIGKILLed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.parentdeath import die_with_parent

# A parent that starts ``sleep`` armed, prints its pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
from common.parentdeath import die_with_parent
child = subprocess.Popen(["sleep", "600"], preexec_fn=die_with_parent(), start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(die_with_parent() is None, reason="PR_SET_PDEATHSIG is Linux only")
def test_an_armed_child_ends_with_its_killed_parent() -> None:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, env=env, text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child) and os.getsid(child) == child  # a session of its own
        parent.kill()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")
