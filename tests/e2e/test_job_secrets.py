"""A job's secret_env on the whole platform, as `faas up` runs it (its own secrets key), with a
real container: the container has the variable (it prints that it is set and a digest of it,
never the value); no answer, log line or file of the platform's data holds the value."""

import hashlib
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.platform_harness import poll_json, running_platform, session
from tests.functions import PYTHON_IMAGE

pytestmark = pytest.mark.e2e

SHOW = (
    "import hashlib, os; v = os.environ.get('API_TOKEN'); "
    "print('API_TOKEN set:', v is not None); "
    "print('sha256:', hashlib.sha256(v.encode()).hexdigest() if v else '-')"
)


async def test_a_real_container_gets_its_secret_env_and_nothing_shows_it(docker_ready: None, tmp_path: Path) -> None:
    secret, password = "sv-" + secrets.token_hex(16), "pw-" + secrets.token_hex(16)
    data = tmp_path / "data"
    async with running_platform(data) as platform, session(platform) as http:
        key = data / "secrets.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        spec: dict[str, Any] = {
            "name": "uses-a-token",
            "container": {
                "image": PYTHON_IMAGE,
                "command": ["python3", "-c", SHOW],
                "env": {"VISIBLE": "yes"},
                "secret_env": {"API_TOKEN": secret},
                # present locally: never pulled, but sealed and carried all the same
                "registry_auth": {"username": "bot", "password": password},
            },
        }
        async with http.post("/v1/jobs", json=spec) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["id"]
        record = await poll_json(
            http, f"/v1/jobs/{job_id}", lambda status, body: status == 200 and body["status"] in ("FINISHED", "ERROR")
        )
        assert record["status"] == "FINISHED", record
        assert record["secret_env_names"] == ["API_TOKEN"] and record["env"] == {"VISIBLE": "yes"}
        logs = await poll_json(http, f"/v1/jobs/{job_id}/logs", lambda status, body: status == 200 and body["lines"])
        texts = [line["text"] for line in logs["lines"]]
        assert texts == ["API_TOKEN set: True", "sha256: " + hashlib.sha256(secret.encode()).hexdigest()]
        for answer in (record, logs):
            assert secret not in str(answer) and password not in str(answer)
        # The platform's data: nats-server's store, the database (WAL included), the agent's cache.
        for path in data.rglob("*"):
            if path.is_file() and path != key:
                content = path.read_bytes()
                assert secret.encode() not in content and password.encode() not in content, path
