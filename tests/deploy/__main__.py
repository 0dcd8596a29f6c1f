"""``python -m tests.deploy`` (``make deploy-test``): hosts, the playbook, the checks, teardown.

The sequence: build the host image; start the hosts; write the inventory; run site.yml; run
the checks in order (each prints its line as it ends); print the summary and the total time;
remove every container and the network, also on a failure, Ctrl-C or SIGTERM. Exit status 0
only when every check passed. ``--keep`` leaves the hosts running to look at them
(remove them with ``python -m tests.deploy --clean``).
"""

import argparse
import asyncio
import logging
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.deploy import hosts as hostlib
from tests.deploy.checks import CHECKS
from tests.deploy.deployment import Deployment, Result
from tests.deploy.hosts import Host, Hosts
from tests.deploy.operator import copy_source, run_playbook, ssh_key, wheelhouse, write_inventory

# 3 NATS servers (a JetStream cluster), 2 gateways, 1 store, 2 agent hosts on 6 hosts: the NATS
# host killed by check 3 (h1) runs nothing else, nor do the store and agent hosts.
LAYOUT = (
    ("h1", ("nats",)),
    ("h2", ("nats", "gateway")),
    ("h3", ("nats", "gateway")),
    ("h4", ("store",)),
    ("h5", ("agents",)),
    ("h6", ("agents",)),
)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running at the end")
    parser.add_argument("--clean", action="store_true", help="remove the hosts of earlier runs, and exit")
    parser.add_argument("--only", type=int, action="append", help="run only check N (repeatable)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/faas-deploytest"), help="work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.clean:
        hostlib.remove_leftovers()
        return 0
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    t0 = time.monotonic()
    run = secrets.token_hex(3)
    work = args.work / run
    work.mkdir(parents=True)
    layout = [Host(name, groups) for name, groups in LAYOUT]
    for host in layout:
        if host.is_agent:
            host.node_id = f"dt-{run}-{host.name}"
    hosts = Hosts(run, layout, work)
    results: list[Result] = []
    try:
        _say(f"run {run}: work directory {work}")
        t = time.monotonic()
        hostlib.build_image()
        source = copy_source(work / "src")
        wheels = wheelhouse(source)
        key, hosts.public_key = ssh_key(work)
        _say(f"host image, source copy and wheelhouse ready ({time.monotonic() - t:.0f} s)")
        t = time.monotonic()
        hosts.start()
        _say(f"{len(layout)} hosts up ({time.monotonic() - t:.0f} s): " + ", ".join(_describe(h) for h in layout))
        inventory = write_inventory(hosts, key, work / "inventory.ini", source, wheels)
        first = run_playbook(inventory, work / "ansible.log")
        _say(f"first deploy: ansible-playbook {first.seconds:.0f} s, changed {first.changed()}")
        deployment = Deployment(hosts, work / "secrets", inventory=inventory, source=source, work=work)
        deployment.read_tokens()
        for number, name, check in CHECKS:
            if args.only and number not in args.only:
                continue
            c0 = time.monotonic()
            try:
                result = asyncio.run(check(deployment))
            except Exception as err:  # a check that crashed is a FAIL with its reason
                logging.exception("check %d crashed", number)
                result = Result(number, name, False, f"crashed: {err!r}"[:500])
            result.number, result.name, result.seconds = number, name, time.monotonic() - c0
            results.append(result)
            _say(result.line())
    except KeyboardInterrupt:
        _say("interrupted")
        results.append(Result(0, "interrupted", False, "Ctrl-C or SIGTERM"))
    except Exception as err:
        logging.exception("deploy test failed")
        results.append(Result(0, "setup", False, repr(err)[:2000]))
    finally:
        if args.keep:
            _say(f"--keep: hosts left running (python -m tests.deploy --clean removes them); work {work}")
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the teardown
            hosts.teardown()
            shutil.rmtree(hosts.work / "sockets", ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    total = time.monotonic() - t0
    print("\n==== deploy test summary", flush=True)
    for result in results:
        print(result.line(), flush=True)
    passed = sum(r.ok for r in results)
    print(f"==== {passed}/{len(results)} checks passed, total {total:.0f} s ({total / 60:.1f} min)", flush=True)
    return 0 if results and all(r.ok for r in results) else 1


def _describe(host: Host) -> str:
    return f"{host.name} {host.address} [{'+'.join(host.groups)}]"


def _say(text: str) -> None:
    print(f"[deploy-test {time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
