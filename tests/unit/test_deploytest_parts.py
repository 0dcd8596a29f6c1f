"""The parts of the deploy test (tests/deploy) that judge: the playbook recap and what it says
changed, the refusal window under load, the inventory and settings handed to ansible-playbook."""

import json
from pathlib import Path

from tests.deploy.checks.load import LoadRun, Sent
from tests.deploy.hosts import Host, Hosts
from tests.deploy.operator import PlaybookRun, write_inventory

OUTPUT = """\
TASK [common : Pack the project source (controller)] ***************************
ok: [h1 -> localhost]

TASK [agent : faas-agent settings (EnvironmentFile)] ***************************
ok: [h5]
changed: [h6]

RUNNING HANDLER [agent : Restart faas-agent] ***********************************
changed: [h6]

PLAY RECAP *********************************************************************
h1                         : ok=32   changed=0    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
h6                         : ok=26   changed=2    unreachable=0    failed=0    skipped=6    rescued=0    ignored=0
"""


def test_the_recap_says_what_changed_where() -> None:
    run = PlaybookRun.parse(1.0, OUTPUT)
    assert run.changed() == {"h1": 0, "h6": 2}
    assert run.changed_tasks() == [
        "h6: agent : faas-agent settings (EnvironmentFile)",
        "h6: agent : Restart faas-agent",
    ]


def test_the_longest_refusal_is_measured_per_gateway_until_the_next_acceptance() -> None:
    ok, refused = {"id": "c"}, {"error": {}}
    run = LoadRun(
        sent=[
            Sent(0.0, "h2", 202, ok),
            Sent(1.0, "h2", 503, refused),
            Sent(2.0, "h3", 503, refused),
            Sent(3.0, "h2", 503, refused),
            Sent(4.5, "h2", 202, ok),
            Sent(5.0, "h3", 202, ok),
        ]
    )
    assert run.longest_refusal_s() == 3.5  # h2: 1.0 -> 4.5; h3: 2.0 -> 5.0
    assert run.accepted == ["c", "c", "c"]
    assert run.statuses() == {202: 3, 503: 3}
    assert run.unexpected() == {}
    run.sent.append(Sent(6.0, "h3", 500, {"error": "boom"}))
    assert list(run.unexpected()) == [500]


def test_the_inventory_has_the_groups_and_the_settings_go_as_extra_vars(tmp_path: Path) -> None:
    layout = [
        Host("h1", ("nats",), address="10.1.0.11"),
        Host("h2", ("nats", "gateway"), address="10.1.0.12"),
        Host("h5", ("agents",), address="10.1.0.15", node_id="dt-x-h5"),
    ]
    hosts = Hosts("x", layout, tmp_path)
    inventory = write_inventory(hosts, tmp_path / "key", tmp_path / "inventory.ini", tmp_path / "src", tmp_path / "w")
    text = inventory.read_text()
    assert "[nats]\nh1 ansible_host=10.1.0.11\nh2 ansible_host=10.1.0.12\n" in text
    assert "[gateway]\nh2 ansible_host=10.1.0.12\n" in text
    assert f"h5 ansible_host=10.1.0.15 faas_agent_node_id=dt-x-h5 faas_agent_socket_dir={tmp_path}/sockets/h5" in text
    # Inventory [all:vars] rank below the playbook's group_vars/all.yml: no faas_ setting there.
    all_vars = text.split("[all:vars]", 1)[1]
    assert "faas_" not in all_vars
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["faas_pip_wheelhouse"] == str(tmp_path / "w")
    assert settings["faas_agent_extra_env"] == {"FAAS_AGENT_NETWORK_SEAL": "false"}
