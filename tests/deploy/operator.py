"""What the operator does on the controller: a wheelhouse, an inventory, ``ansible-playbook``.

Owns the run's copy of the source (the playbook's ``faas_source_root``: check 6 changes code
there, not in the checkout), the wheelhouse the hosts install from (``pip wheel`` here, once,
cached by the hash of pyproject.toml: the hosts then need no package index), the SSH key, the
inventory, and the playbook runs with their PLAY RECAP.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.hosts import Hosts

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "deploy" / "ansible" / "site.yml"
WHEELHOUSES = Path("/tmp/faas-deploytest-wheelhouse")
# What the source copy leaves out (as the playbook's faas_source_excludes, plus the tests'
# caches): a copy of the checkout as an operator has it.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "data", "build", "dist", "__pycache__", "*.pyc", "*.egg-info", ".*_cache"
)
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class PlaybookFailed(RuntimeError):
    """ansible-playbook exited non-zero (its output's tail is in the message)."""


@dataclass
class PlaybookRun:
    """One ``ansible-playbook`` run: seconds, and per host the recap's counts."""

    seconds: float
    recap: dict[str, dict[str, int]]
    output: str

    @classmethod
    def parse(cls, seconds: float, output: str) -> "PlaybookRun":
        recap = {
            m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
            for m in RECAP.finditer(output)
        }
        return cls(seconds, recap, output)

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}

    def changed_tasks(self) -> list[str]:
        """The "changed: [host]" lines' tasks, for saying what a run changed."""
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed: ["):
                tasks.append(f"{line.split('[', 1)[1].split(']', 1)[0]}: {current}")
        return tasks


def copy_source(dest: Path) -> Path:
    """A copy of the checkout, the deployed source of this run."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    return dest


def wheelhouse(source: Path) -> Path:
    """Wheels of the project's dependencies and build backend, made once per pyproject.toml."""
    digest = hashlib.sha256((source / "pyproject.toml").read_bytes()).hexdigest()[:16]
    out = WHEELHOUSES / digest
    if (out / ".complete").exists():
        return out
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--wheel-dir", str(tmp)]
    subprocess.run([*pip, "setuptools>=68", "wheel"], check=True)
    subprocess.run([*pip, str(source)], check=True)
    for own in tmp.glob("faas_platform-*.whl"):
        own.unlink()  # the hosts build the project from the shipped source
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / ".complete").touch()
    return out


def ssh_key(work: Path) -> tuple[Path, str]:
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "faas-deploytest", "-f", str(key)], check=True)
    return key, (work / "id_ed25519.pub").read_text().strip()


def write_inventory(hosts: Hosts, key: Path, path: Path, source: Path, wheels: Path) -> Path:
    """The inventory an operator writes (groups nats, store, gateway, agents), plus the test's
    settings: the outer Docker engine on agent hosts, the wheelhouse, the run's own paths."""
    lines: list[str] = []
    for group in ("nats", "store", "gateway", "agents"):
        lines.append(f"[{group}]")
        for host in hosts.in_group(group):
            extra = ""
            if group == "agents":
                extra = f" faas_agent_node_id={host.node_id} faas_agent_socket_dir={hosts.socket_dir(host)}"
            lines.append(f"{host.name} ansible_host={host.address}{extra}")
        lines.append("")
    lines += [
        "[all:vars]",
        "ansible_user=debian",
        "ansible_become=true",
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_private_key_file={key}",
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'",
        "",
    ]
    path.write_text("\n".join(lines))
    # The test's settings, given as an operator overrides group_vars/all.yml: with -e (the
    # inventory's [all:vars] rank below the playbook's group_vars/all.yml).
    settings = {
        "faas_source_root": str(source),
        "faas_secrets_dir": str(path.parent / "secrets"),
        "faas_pip_wheelhouse": str(wheels),
        # The outer engine, through the mounted socket (tests/deploy/README.md): no Docker to
        # install, the runtime images are there already.
        "faas_docker_install": "none",
        "faas_build_images": False,
        # A dead agent's calls come back after ack_wait: short, so that check 4 is quick.
        "faas_agent_ack_wait_s": 10,
        "faas_agent_slots": 4,
        "faas_agent_grace_s": 10,
        "faas_gateway_shutdown_grace_s": 5,
        "faas_stop_margin_s": 10,
        # The sealed network's rules would go to the host container's netns while the function
        # containers run on the outer engine's bridge: not sealable here (README).
        "faas_agent_extra_env": {"FAAS_AGENT_NETWORK_SEAL": "false"},
    }
    (path.parent / "settings.json").write_text(json.dumps(settings, indent=2))
    return path


def run_playbook(inventory: Path, log_file: Path, *extra: str) -> PlaybookRun:
    """``ansible-playbook -i <inventory> deploy/ansible/site.yml``; its output goes to log_file."""
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    binary = shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook"
    t0 = time.monotonic()
    lines: list[str] = []
    with (
        log_file.open("a") as log,
        subprocess.Popen(
            [binary, "-i", str(inventory), "-e", f"@{inventory.parent / 'settings.json'}", str(PLAYBOOK), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        log.write(f"\n===== ansible-playbook {' '.join(extra)}\n")
        assert proc.stdout is not None
        try:
            for line in proc.stdout:  # the log gets each line with the time it came (task timings)
                lines.append(line)
                log.write(f"{time.strftime('%H:%M:%S')} {line}")
                log.flush()
        except BaseException:  # Ctrl-C, SIGTERM: the playbook stops too, before the teardown
            proc.terminate()
            raise
    seconds = time.monotonic() - t0
    output = "".join(lines)
    if proc.returncode != 0:
        raise PlaybookFailed(f"ansible-playbook exit {proc.returncode} (log: {log_file}):\n{output[-3000:]}")
    return PlaybookRun.parse(seconds, output)
