"""Job secrets: the key file, sealing and opening, the binding to one job, the spec's rules,
and a job's run with them (the container gets them; output and errors show none)."""

import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.sealing import SealError, SecretsKey, ensure_key_file
from node_agent.jobs.secrets import Redactor, SecretsUnavailable, open_secrets
from schemas import InvalidMessage, JobContainer, JobMessage, JobSpec, JobStatus, RegistryAuth, decode, encode
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.unit.test_jobs_run import KEY, job, run

SECRET = "tok-8f3a9c2e-secret"
PASSWORD = "pw-d41d8cd98f00"


def sealed_job(**container: Any) -> JobMessage:
    return job(secret_env={"API_TOKEN": SECRET}, **container)


# --- the key ------------------------------------------------------------------------------------
def test_a_sealed_token_opens_with_its_key_only_and_not_once_changed() -> None:
    token = KEY.seal(b"hello")
    assert b"hello" not in token.encode() and KEY.open(token) == b"hello"
    with pytest.raises(SealError, match="not sealed with a key"):
        SecretsKey([SecretsKey.generate()]).open(token)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SealError):
        KEY.open(tampered)


def test_rotation_the_first_key_seals_every_key_opens(tmp_path: Path) -> None:
    old, new = SecretsKey.generate(), SecretsKey.generate()
    before = SecretsKey([old]).seal(b"queued before the rotation")
    path = tmp_path / "secrets.key"
    path.write_bytes(b"# rotated\n" + new + b"\n\n" + old + b"\n")
    path.chmod(0o600)
    rotated = SecretsKey.load(path)
    assert rotated.open(before) == b"queued before the rotation"
    assert SecretsKey([new]).open(rotated.seal(b"x")) == b"x"
    with pytest.raises(SealError):
        SecretsKey([old]).open(rotated.seal(b"x"))


def test_the_key_file_is_made_once_private_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secrets.key"
    assert ensure_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert not ensure_key_file(path) and path.read_bytes() == first  # never replaced
    SecretsKey.load(path)
    path.chmod(0o640)
    with pytest.raises(SealError, match="chmod 600"):
        SecretsKey.load(path)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    with pytest.raises(SealError, match="not a Fernet key"):
        SecretsKey.load(bad)
    with pytest.raises(SealError, match="No such file"):
        SecretsKey.load(tmp_path / "missing.key")


# --- the spec and the message ------------------------------------------------------------------
def test_secret_values_never_show_in_a_dump_or_a_repr() -> None:
    c = JobContainer(
        image="img", secret_env={"API_TOKEN": SECRET}, registry_auth={"username": "u", "password": PASSWORD}
    )
    for text in (repr(c), c.model_dump_json(), str(c.model_dump()), repr(c.secrets("j1"))):
        assert SECRET not in text and PASSWORD not in text
    opened = c.secrets("j1")
    assert opened.env == {"API_TOKEN": SECRET}
    assert opened.registry_auth == {"username": "u", "password": PASSWORD}
    assert sorted(opened.values()) == sorted([SECRET, PASSWORD])


@pytest.mark.parametrize(
    ("container", "expect"),
    [
        ({"secret_env": {"1BAD": SECRET}}, "pattern"),
        ({"secret_env": {"A-B": SECRET}}, "pattern"),
        ({"env": {"API_TOKEN": "x"}, "secret_env": {"API_TOKEN": SECRET}}, "also set in env: API_TOKEN"),
        ({"secret_env": {"A": SECRET + "\0"}}, "NUL"),
        ({"secret_env": {f"V{i}": "x" for i in range(101)}}, "at most 100"),
    ],
)
def test_bad_secret_env_is_refused_without_echoing_a_value(container: dict[str, Any], expect: str) -> None:
    with pytest.raises(ValidationError) as err:
        JobContainer(image="img", **container)
    assert expect in str(err.value)
    assert all(SECRET not in e["msg"] for e in err.value.errors())


def test_a_job_message_never_carries_secrets_in_clear() -> None:
    spec = JobSpec(name="j", container=JobContainer(image="img", secret_env={"API_TOKEN": SECRET}))
    with pytest.raises(ValidationError, match="travel sealed"):
        JobMessage(id="j1", spec=spec)
    # as a NATS publisher might send it: refused, and the reason holds no value
    raw = (
        b'{"id":"j1","spec":{"name":"j","container":{"image":"img","registry_auth":{"username":"u","password":"%s"}}}}'
    )
    with pytest.raises(InvalidMessage) as err:
        decode(JobMessage, raw % PASSWORD.encode())
    assert "travel sealed" in str(err.value) and PASSWORD not in str(err.value)
    message = sealed_job()
    data = encode(message)
    assert SECRET.encode() not in data and b"API_TOKEN" not in data  # names travel sealed too
    assert decode(JobMessage, data).sealed == message.sealed


# --- opening on the node -------------------------------------------------------------------------
def test_secrets_open_only_with_the_key_and_for_their_own_job() -> None:
    message = sealed_job()
    assert open_secrets(message, KEY).env == {"API_TOKEN": SECRET}
    assert open_secrets(job(), None).env == {}  # no secrets: no key needed
    with pytest.raises(SecretsUnavailable, match="no secrets key"):
        open_secrets(message, None)
    with pytest.raises(SecretsUnavailable, match="cannot open"):
        open_secrets(message, SecretsKey([SecretsKey.generate()]))
    # the sealed blob copied into a job that would run another image (or as another job)
    other_image = message.model_copy(
        update={"spec": message.spec.model_copy(update={"container": JobContainer(image="evil", env={"A": "1"})})}
    )
    with pytest.raises(SecretsUnavailable, match="sealed for another job"):
        open_secrets(other_image, KEY)
    with pytest.raises(SecretsUnavailable, match="sealed for another job"):
        open_secrets(message.model_copy(update={"id": "j2"}), KEY)


def test_the_redactor_masks_values_of_four_characters_and_more() -> None:
    redact = Redactor([SECRET, "abc", SECRET + "-longer"])
    assert redact(f"a {SECRET}-longer b {SECRET} abc") == "a *** b *** abc"
    assert not Redactor(["abc"]) and Redactor([SECRET])


# --- a run -------------------------------------------------------------------------------------------
def printing(*lines: str, code: int = 0) -> FakeEngine:
    async def program(p: Process) -> int:
        for line in lines:
            await p.out(line.format(**p.env).encode() + b"\n")
        for line in lines:
            await p.err(line.format(**p.env).encode() + b"\n")
        return code

    return FakeEngine(program, images={"img"}, pullable={"private/img"})


async def test_the_container_gets_the_secrets_its_output_and_error_do_not_show_them() -> None:
    engine = printing("token is {API_TOKEN}", code=3)
    outcome, fake, _ = await run(engine, sealed_job())
    [spec] = engine.created
    assert spec.env == {"A": "1", "API_TOKEN": SECRET}
    assert fake.texts() == [("stdout", "token is ***"), ("stderr", "token is ***")]
    assert outcome.status == JobStatus.ERROR and outcome.result.error == "exit code 3: token is ***"


async def test_the_pull_gets_the_credentials_and_its_error_is_masked() -> None:
    auth = RegistryAuth(username="bot", password=PASSWORD, serveraddress="registry.example")
    engine = printing("ok")
    outcome, _, _ = await run(engine, job(image="private/img", registry_auth=auth))
    assert outcome.status == JobStatus.FINISHED
    assert engine.pulls == [
        ("private/img", {"username": "bot", "password": PASSWORD, "serveraddress": "registry.example"})
    ]

    class EchoingRegistry(FakeEngine):
        async def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
            from node_agent.errors import EngineError

            raise EngineError(f"unauthorized: bad credentials {auth}")

    outcome, _, _ = await run(EchoingRegistry(images=()), job(image="private/img", registry_auth=auth))
    error = outcome.result.error or ""
    assert outcome.status == JobStatus.ERROR and "pull failed: unauthorized" in error
    assert PASSWORD not in error and "***" in error


async def test_a_node_without_the_key_ends_the_job_error_without_touching_docker() -> None:
    engine = printing("never")
    outcome, _, started = await run(engine, sealed_job(), key=None)
    assert outcome.status == JobStatus.ERROR
    assert outcome.result.error == "the job has sealed secrets but this node has no secrets key (secrets_key_file)"
    assert engine.calls == [] and started == []
    outcome, _, _ = await run(engine, sealed_job(), key=SecretsKey([SecretsKey.generate()]))
    assert outcome.status == JobStatus.ERROR and "cannot open the job's secrets" in (outcome.result.error or "")
    assert engine.calls == []


def test_faas_up_hands_the_gateway_and_the_agent_the_same_key_file(tmp_path: Path) -> None:
    from faas_cli.up import Platform, UpConfig

    platform = Platform(UpConfig(data_dir=tmp_path / "data"))
    env = platform._env()
    path = tmp_path.resolve() / "data" / "secrets.key"
    assert env["gateway"]["FAAS_GATEWAY_SECRETS_KEY_FILE"] == str(path)
    assert env["node_agent"]["FAAS_AGENT_SECRETS_KEY_FILE"] == str(path)
    assert not any("SECRETS" in k for k in env["store"])  # the store never sees a secret
