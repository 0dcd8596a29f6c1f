"""Child processes that end with the process that started them.

``faas up`` and the test harnesses start nats-server and the services in sessions of their
own (so a terminal's Ctrl-C reaches only the parent, which then stops them in order). A
process in its own session no longer gets the terminal's signals, so if the parent is
SIGKILLed nothing would stop it: :func:`die_with_parent` arms Linux's
``PR_SET_PDEATHSIG`` in the child, between ``fork`` and ``exec``, so the kernel sends it a
signal the moment its parent dies. The setting survives ``exec`` (nats-server, a Go binary,
keeps it too) and is not inherited by the child's own children.

Elsewhere than Linux there is no such call: :func:`die_with_parent` returns None and a
SIGKILLed parent leaves its children running (stop them by hand).
"""

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess`` / ``asyncio.create_subprocess_exec``: the child
    gets ``sig`` when the process calling this dies. None where the OS cannot do it.

    SIGTERM by default: a service then stops as it does on ``faas up``'s own stop (the node
    agent removes its containers), within its grace period, in no particular order.

    The signal goes when the parent *thread* that forked the child ends: call this from the
    thread that lives as long as the process (the event loop's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        # Runs in the forked child: only the call resolved above, then a check for the race
        # of a parent that died before the call took effect. SIGKILL there: until ``exec``
        # the child still has the parent's signal handlers, which may catch ``sig``.
        prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm
