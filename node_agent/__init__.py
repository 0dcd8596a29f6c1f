"""Node agent: pulls invocations and jobs for the runtimes it serves and runs them in Docker.

The package, by concept:

* ``agent.py``: the composition root and lifecycle: pull loops within the node's slots,
  warm pools, heartbeat, rescue of dead nodes' work. ``settings.py``, ``nodeid.py``.
* ``calls/``: one invocation, from its delivery to its ``finished`` event and ack, and the
  policy that picks the container that runs it.
* ``jobs/``: container jobs: priority intake, one run per job, cancels.
* ``pools/``: warm containers kept ahead of calls, keyed by runtime or function version, and
  how each is made.
* ``containers/``: Docker (the only module that imports aiodocker), function artifacts,
  dependency images, the shell scripts a container runs, and the host firewall rules of the
  sealed network that containers with network access join.
* ``wire/``: the protocols spoken with a started container (handler JSON lines, command
  stdout, end markers), over attached stdio or a Unix socket.
* ``outcome.py``, ``errors.py``, ``logstream.py``: what a call ended as, the agent's
  errors, and live output published as log events; shared by calls and jobs.
"""
