"""CPU per JetStream publish (with its PubAck): nats-py's ``JetStreamContext.publish``
against the platform's lean publisher (common/jspub.py), interleaved, on a fresh embedded
nats-server.

    python -m bench.publish [--publishes 4000] [--concurrency 8] [--rounds 3]

Prints the process CPU time per publish (publishing and taking the PubAck) and the rate.
"""

import argparse
import asyncio
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable

import nats
from nats.js.api import PubAck, StreamConfig

from common.jspub import JsPublisher
from common.lifecycle import run_loop
from common.natsserver import NatsServer

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[PubAck]]


async def _measure(publish: Publish, subject: str, n: int, concurrency: int) -> tuple[float, float]:
    data = b'{"params":' + b"1" * 200 + b"}"  # about a call's Finished event
    run = secrets.token_hex(4)

    async def worker(k: int) -> None:
        for i in range(n // concurrency):
            await publish(subject, data, {"Nats-Msg-Id": f"{run}-{k}-{i}"})

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    done = n // concurrency * concurrency
    return (time.process_time() - cpu) / done * 1e6, done / (time.perf_counter() - wall)


async def main(publishes: int, concurrency: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(tmp) as server:
            nc = await nats.connect(server.url)
            try:
                js = nc.jetstream()
                await js.add_stream(StreamConfig(name="BENCH_PUB", subjects=["bench.pub.>"]))
                lean = JsPublisher(nc)

                async def nats_py(subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
                    return await js.publish(subject, data, headers=headers)

                async def jspub(subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
                    return await lean.publish(subject, data, headers=headers)

                await _measure(jspub, "bench.pub.warm", 500, concurrency)  # connection, SUB, JIT caches
                print(f"{publishes} publishes per round, {concurrency} concurrent, µs of CPU per publish")
                for r in range(1, rounds + 1):
                    for name, publish in (("JetStreamContext.publish", nats_py), ("JsPublisher.publish", jspub)):
                        cpu_us, rate = await _measure(publish, "bench.pub.x", publishes, concurrency)
                        print(f"round {r}  {name:26s} {cpu_us:6.1f} µs CPU  {rate:8.0f} publishes/s")
            finally:
                await nc.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishes", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    run_loop(main(a.publishes, a.concurrency, a.rounds))
