"""nats-server's configuration, made from the users and permissions of common/natsauth.py.

``faas up`` and the tests run the embedded server with it (common/natsserver.py); the Ansible
deployment renders the same blocks from the same permissions (deploy/ansible, checked
against these by tests/unit/test_ansible_playbook.py). The file is JSON, which nats-server's
configuration format reads as it is.

* Authorization: the five users of natsauth, each with its permissions; the server holds
  bcrypt hashes of their passwords, never the passwords.
* Monitoring (``/varz``, ``/routez``, ``/jsz``...) listens on 127.0.0.1 only, whatever the
  client address: it answers anyone who reaches it.
* TLS for clients (optionally verifying client certificates) and for cluster routes, which
  are also authenticated with a route user and password.
* JetStream's fsync policy (``sync_interval``): see :data:`SYNC_INTERVAL`.
"""

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bcrypt

from common.natsauth import permissions, users_from
from schemas import Layout

# The passwords are 256-bit random strings (natsauth.new_password): no work factor makes them
# any easier or harder to guess, and nats-server checks the hash on every connect (cost 10
# is ~65 ms of a core each time), so the cost is low. A hash keeps the password out of the file.
BCRYPT_COST = 6
# Servers of a cluster authenticate each other's routes as this user.
ROUTE_USER = "route"
MONITOR_HOST = "127.0.0.1"
# How often JetStream fsyncs its files: nats-server's own default, said out loud. A write
# is acknowledged once it is in the stream's files (the kernel's page cache) of a quorum of
# its replicas (2 of 3), so it survives any server process crashing or being killed, and the
# loss of one whole host; what the last interval wrote is lost only if a quorum of hosts
# lose power (or the kernel) at once. "always" fsyncs every write before the ack: that also
# survives a power cut of every host, at the price of a disk flush per message on the
# pipeline's hot path (each call is two to four stream writes). deploy/ansible/README.md "Durability".
SYNC_INTERVAL = "2m"


def hash_password(password: str, cost: int = BCRYPT_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def _port(port: int) -> int:
    """0 (a free port, as the tests and ``faas up --nats-port 0`` say it) is -1 for nats-server."""
    return -1 if port == 0 else port


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key; the CA that signed the peers' certificates; whether
    peers must present one (clients: mutual TLS; routes: always, see :class:`ClusterConf`)."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify: bool = False

    def block(self, verify: bool | None = None) -> dict[str, Any]:
        block: dict[str, Any] = {"cert_file": str(self.cert), "key_file": str(self.key), "timeout": 5}
        if self.ca is not None:
            block["ca_file"] = str(self.ca)
        block["verify"] = self.verify if verify is None else verify
        return block


@dataclass(frozen=True)
class ClusterConf:
    """Routes to the other servers of a JetStream cluster. Every server runs with the same
    route password; with ``tls``, routes are TLS both ways (each server verifies the other's
    certificate against the CA)."""

    name: str
    password: str
    host: str = "127.0.0.1"
    port: int = 6222
    # "host:port" of the other servers' route listeners
    routes: tuple[str, ...] = ()
    tls: TlsFiles | None = None

    def route_urls(self) -> list[str]:
        secret = quote(self.password, safe="")
        return [f"nats-route://{ROUTE_USER}:{secret}@{peer}" for peer in self.routes]


@dataclass(frozen=True)
class ServerConf:
    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 4222
    # Password of each user of natsauth.USERS; None: no authorization at all (anyone who
    # reaches the port may do anything), which nothing of the project asks for.
    passwords: Mapping[str, str] | None = None
    layout: Layout = field(default_factory=Layout)
    # HTTP monitoring on 127.0.0.1 only; 0: a free port; None: off.
    monitor_port: int | None = None
    tls: TlsFiles | None = None
    cluster: ClusterConf | None = None
    server_name: str | None = None
    # JetStream's fsync interval ("2m", "30s") or "always": see SYNC_INTERVAL.
    sync_interval: str = SYNC_INTERVAL


def server_config(conf: ServerConf) -> dict[str, Any]:
    """The configuration as data (what :func:`render` writes)."""
    out: dict[str, Any] = {}
    if conf.server_name:
        out["server_name"] = conf.server_name
    out["listen"] = f"{conf.host}:{_port(conf.port)}"
    if conf.monitor_port is not None:
        out["http"] = f"{MONITOR_HOST}:{_port(conf.monitor_port)}"
    out["jetstream"] = {"store_dir": str(conf.store_dir), "sync_interval": conf.sync_interval}
    if conf.passwords is not None:
        out["authorization"] = authorization(conf.passwords, conf.layout)
    if conf.tls is not None:
        out["tls"] = conf.tls.block()
    if conf.cluster is not None:
        c = conf.cluster
        cluster: dict[str, Any] = {
            "name": c.name,
            "listen": f"{c.host}:{_port(c.port)}",
            "authorization": {"user": ROUTE_USER, "password": hash_password(c.password), "timeout": 5},
            "routes": c.route_urls(),
        }
        if c.tls is not None:
            cluster["tls"] = c.tls.block(verify=True)
        out["cluster"] = cluster
    return out


def hashed(passwords: Mapping[str, str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each password's bcrypt hash; a hash in ``known`` that still matches is kept (so that a
    deployment re-run renders the same configuration and restarts nothing)."""
    out: dict[str, str] = {}
    for user, password in passwords.items():
        old = (known or {}).get(user)
        if old and _matches(password, old):
            out[user] = old
        else:
            out[user] = hash_password(password)
    return out


def _matches(password: str, hash_: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hash_.encode())
    except ValueError:  # not a bcrypt hash
        return False


def authorization(
    passwords: Mapping[str, str], layout: Layout, known_hashes: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``authorization`` block: every user, its password's hash and its permissions."""
    hashes = hashed(users_from(passwords), known_hashes)
    perms = permissions(layout)
    return {
        "timeout": 5,
        "users": [
            {"user": user, "password": hashes[user], "permissions": perms[user].server_block()} for user in hashes
        ],
    }


def render(conf: ServerConf) -> str:
    """The configuration file's text. It holds password hashes and the route password:
    write it readable by the server's user only."""
    header = "# nats-server configuration made by common/natsconf.py: edit the settings, not this file\n"
    return header + json.dumps(server_config(conf), indent=2) + "\n"


def _main(argv: list[str] | None = None) -> int:
    """``python -m common.natsconf authorization --prefix faas --hashes FILE < passwords.json``:
    the ``authorization`` block (JSON) for a deployment's nats-server configuration, from the
    users' passwords given on stdin (``{"gateway": "...", ...}``), never on the command line.
    FILE keeps the hashes between runs (0600)."""
    parser = argparse.ArgumentParser(prog="python -m common.natsconf", description=_main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    auth = sub.add_parser("authorization", help="the authorization block, as JSON")
    auth.add_argument("--prefix", default="faas")
    auth.add_argument("--hashes", type=Path, required=True, help="the hashes of earlier runs, kept here")
    args = parser.parse_args(argv)
    passwords = json.load(sys.stdin)
    known = json.loads(args.hashes.read_text()) if args.hashes.exists() else {}
    block = authorization(passwords, Layout(args.prefix), known)
    hashes = {u["user"]: u["password"] for u in block["users"]}
    if hashes != known:
        fd = os.open(args.hashes, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(hashes, f, indent=2, sort_keys=True)
    json.dump(block, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
