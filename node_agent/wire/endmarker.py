"""The end of a one-shot command, framed on its own output streams.

A warm-runtime container runs one command and is then destroyed. Waiting for its process
to exit and for Docker to report it adds a round of Docker calls after the last output, so
the process that runs the command (a shell, or a runtime's shim) writes a framed end marker
instead, once the command has exited:

    stderr: ``\\x1efaas-end:<nonce>\\n``
    stdout: ``\\x1efaas-end:<nonce>:<exit status>:<OOM kills>\\n``

Each is written to its stream after everything the command wrote there (one pipe each), so
once both are seen the output is complete. The nonce is random per call and reaches the
container only on stdin, read into a variable no child process inherits: a function's own
output cannot end its call by accident. Exactly the marker is removed; every byte before
it is the command's.
"""

import secrets
from dataclasses import dataclass

from node_agent.containers.docker import STDERR, Attached
from node_agent.wire.stdio import OnLog, OutputTooLarge, ProtocolError, Streams

PREFIX = b"\x1efaas-end:"


def new_nonce() -> str:
    return secrets.token_hex(12)


@dataclass
class EndStatus:
    """What the marker reported: the command's exit status and the container's OOM kills."""

    exit_code: int
    oom_kills: int


class Scanner:
    """Splits one stream at its marker. Bytes that may be the start of the marker are held
    back (a few bytes, only when the data ends with a prefix of it), the rest passes at once,
    so that logs stay live."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.found = False
        self.after = bytearray()  # what followed the token (the status fields, on stdout)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The part of ``data`` that is the command's own output."""
        if self.found:
            self.after += data
            return b""
        buf = self._held + data
        i = buf.find(self.token)
        if i >= 0:
            self.found, self._held = True, b""
            self.after += buf[i + len(self.token) :]
            return buf[:i]
        keep = _partial_suffix(buf, self.token)
        self._held = buf[len(buf) - keep :] if keep else b""
        return buf[: len(buf) - keep]


def _partial_suffix(buf: bytes, token: bytes) -> int:
    """The length of the longest end of ``buf`` that is a proper beginning of ``token``."""
    start = max(0, len(buf) - len(token) + 1)
    first = token[:1]
    i = buf.find(first, start)
    while i >= 0:
        if token.startswith(buf[i:]):
            return len(buf) - i
        i = buf.find(first, i + 1)
    return 0


def parse_status(fields: bytes | bytearray) -> EndStatus | None:
    """``:<exit>:<oom>\\n`` (what follows the token on stdout), or None if not complete yet."""
    line, nl, _ = bytes(fields).partition(b"\n")
    if not nl:
        return None
    parts = line.split(b":")
    if len(parts) != 3 or parts[0] != b"":
        raise ProtocolError(f"bad end marker status {line[:80]!r}")
    try:
        return EndStatus(exit_code=int(parts[1]), oom_kills=int(parts[2]))
    except ValueError:
        raise ProtocolError(f"bad end marker status {line[:80]!r}") from None


async def read_until_end(
    attached: Attached, nonce: str, result_cap: int, stderr_cap: int, on_log: OnLog | None = None
) -> tuple[Streams, EndStatus | None]:
    """Read a command's output until its end marker is seen on both streams. stdout past
    ``result_cap`` raises :class:`OutputTooLarge`; stderr goes to ``on_log`` as it comes.
    The status is None if the stream ended first (the container's process died)."""
    token = PREFIX + nonce.encode()
    out, err = Scanner(token), Scanner(token + b"\n")
    streams = Streams(stderr_cap=stderr_cap)
    status: EndStatus | None = None
    while status is None or not err.found:
        frame = await attached.read()
        if frame is None:
            return streams, None
        stream, data = frame
        if stream == STDERR:
            data = err.feed(data)
            if data:
                streams.add_stderr(data)
                if on_log is not None:
                    await on_log(STDERR, data)
            continue
        streams.stdout += out.feed(data)
        if len(streams.stdout) > result_cap:
            raise OutputTooLarge(f"the result exceeds its limit of {result_cap} bytes")
        if out.found and status is None:
            status = parse_status(out.after)
    return streams, status
