"""The embedded nats-server comes back after a SIGKILL as it was: same port, same store."""

import os
import signal
from pathlib import Path

from nats.js.api import StreamConfig

from common.jetstream import connect
from common.natsserver import NatsServer


async def test_a_killed_server_starts_again_on_its_port_with_its_streams(tmp_path: Path) -> None:
    async with NatsServer(tmp_path / "nats") as server:
        port, pid = server.port, server.pid
        assert pid is not None and os.getsid(pid) == pid  # a terminal's Ctrl-C is not for it
        nc = await connect(server.url, "test")
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="KEEP", subjects=["keep.>"]))
            await js.publish("keep.1", b"accepted")
            os.kill(pid, signal.SIGKILL)
            assert await server.wait() == -signal.SIGKILL and not server.running
            await server.start()
            assert server.running and server.pid != pid and server.port == port
            msg = await js.get_msg("KEEP", 1)  # the client reconnected by itself
            assert msg.data == b"accepted"
        finally:
            await nc.close()
