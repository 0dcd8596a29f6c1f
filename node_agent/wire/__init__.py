"""The protocols spoken with a started container.

``stdio`` reads and writes a container's attached stdio: the handler protocol's JSON lines
(a shim that serves call after call) and the command protocol's output (stdout is the
result); ``call`` runs one call over either and ends it as an ``Outcome``; ``endmarker``
frames the end of a one-shot command on its own streams; ``socket`` carries the handler
protocol over a Unix socket instead of Docker's attach stream.
"""
