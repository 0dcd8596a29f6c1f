"""The CLI's three output forms (table, plain, json), its exit codes and its one-line
errors, against a fake gateway (tests/fakes/gateway_client.py), with click's CliRunner."""

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from faas_cli import exits
from faas_cli.client import GatewayError
from faas_cli.commands.jobs import default_name
from faas_cli.main import cli
from faas_cli.progress import upload_progress
from tests.fakes.gateway_client import FakeGatewayClient

DONE = {
    "id": "c1a2b3",
    "number": 17,
    "function": "dice",
    "version": 2,
    "status": "DONE",
    "served": "warm",
    "duration_ms": 12.4,
    "node": "n1",
    "created_at": "2026-12-03T19:20:01.5+00:00",
    "result": [4, 6],
}
FAILED = {**DONE, "id": "c9", "number": 16, "status": "ERROR", "result": None}
FAILED["error"] = {"type": "ValueError", "message": "boom"}
PAGE = {"items": [DONE, FAILED], "next_cursor": "16"}


def faas(fake: FakeGatewayClient, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj=fake, env={"FAAS_OUTPUT": None, "COLUMNS": "160", **(env or {})})


@pytest.fixture
def fake() -> FakeGatewayClient:
    return FakeGatewayClient(
        {
            ("GET", "/v1/calls"): (200, PAGE),
            ("GET", "/v1/calls/17"): (200, DONE),
            ("GET", "/v1/calls/c1a2b3"): (200, DONE),
            ("POST", "/v1/functions/dice/invoke"): (200, DONE),
            ("POST", "/v1/functions/bad/invoke"): (200, FAILED),
        }
    )


def test_piped_output_is_plain_aligned_columns(fake: FakeGatewayClient) -> None:
    result = faas(fake, "calls")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["#", "ID", "FUNCTION", "VERSION", "STATUS", "SERVED", "DURATION", "NODE", "CREATED"]
    assert first.split()[:7] == ["17", "c1a2b3", "dice", "2", "DONE", "warm", "12"]
    assert second.split()[4:7] == ["ERROR", "warm", "12"]
    assert header.index("STATUS") == first.index("DONE") == second.index("ERROR")  # aligned
    assert "─" not in result.stdout and "\x1b[" not in result.stdout
    assert "--cursor 16" in result.stderr  # the next page, for the person, not in the listing


def test_table_output_has_a_rule_under_the_header(fake: FakeGatewayClient) -> None:
    result = faas(fake, "-o", "table", "calls")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["#", "ID"] and set(lines[1]) == {"─"}
    assert "c1a2b3" in lines[2] and "ERROR" in lines[3]


def test_json_output_is_the_answer_as_the_api_gave_it(fake: FakeGatewayClient) -> None:
    for args in (("-o", "json", "calls"), ("calls", "-o", "json")):
        result = faas(fake, *args)
        assert result.exit_code == 0 and json.loads(result.stdout) == PAGE
    result = faas(fake, "calls", env={"FAAS_OUTPUT": "json"})
    assert json.loads(result.stdout) == PAGE
    # the command's -o wins over the root's
    assert faas(fake, "-o", "json", "calls", "-o", "plain").stdout.split()[:2] == ["#", "ID"]


def test_a_record_is_a_field_a_line(fake: FakeGatewayClient) -> None:
    plain = faas(fake, "call", "17")
    assert plain.exit_code == 0 and plain.stdout == faas(fake, "call", "show", "17").stdout
    fields = dict(line.split(":", 1) for line in plain.stdout.splitlines())
    assert fields["status"].strip() == "DONE" and fields["result"].strip() == "[4,6]"
    assert fields["duration_ms"].strip() == "12 ms"
    assert json.loads(faas(fake, "call", "17", "-o", "json").stdout) == DONE


def test_invoke_prints_the_result_alone_when_piped(fake: FakeGatewayClient) -> None:
    result = faas(fake, "invoke", "dice", '{"roll": "2d6"}')
    assert result.exit_code == 0 and json.loads(result.stdout) == [4, 6]
    method, path, kw = fake.sent[-1]
    assert (method, path, kw["json"]) == ("POST", "/v1/functions/dice/invoke", {"roll": "2d6"})
    assert json.loads(faas(fake, "invoke", "dice", "-o", "json").stdout) == DONE


def test_a_failed_call_exits_1_with_one_line(fake: FakeGatewayClient) -> None:
    plain = faas(fake, "invoke", "bad")
    assert plain.exit_code == exits.FAILED and plain.stdout == ""
    assert plain.stderr.strip().splitlines() == ["Error: call c9 ended ERROR: ValueError: boom"]
    as_json = faas(fake, "invoke", "bad", "-o", "json")
    assert as_json.exit_code == exits.FAILED and json.loads(as_json.stdout) == FAILED


def test_invoke_params_from_a_file_and_refused_json(fake: FakeGatewayClient, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"roll": "1d6"}')
    assert faas(fake, "invoke", "dice", f"@{tmp_path / 'p.json'}").exit_code == 0
    assert fake.sent[-1][2]["json"] == {"roll": "1d6"}
    result = faas(fake, "invoke", "dice", "{not json")
    assert result.exit_code == exits.USAGE and "not valid JSON" in result.stderr


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (GatewayError(404, "no function 'x'"), exits.NOT_FOUND),
        (GatewayError(401, "missing token"), exits.AUTH),
        (GatewayError(403, "role read may not"), exits.AUTH),
        (GatewayError(409, "call c1 has ended"), exits.CONFLICT),
        (GatewayError(503, "NATS is unreachable"), exits.UNAVAILABLE),
        (ConnectionRefusedError(111, "Connection refused"), exits.UNAVAILABLE),
        (GatewayError(400, "invalid JSON"), exits.REFUSED),
        (GatewayError(413, "too large"), exits.REFUSED),
    ],
)
def test_errors_are_one_line_and_a_documented_code(answer: Any, code: int) -> None:
    fake = FakeGatewayClient({("POST", "/v1/calls/c1/cancel"): answer})
    result = faas(fake, "call", "cancel", "c1")
    assert result.exit_code == code, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_cancel_says_what_happened() -> None:
    fake = FakeGatewayClient(
        {
            ("POST", "/v1/calls/c1/cancel"): (202, {"id": "c1", "status": "CANCELLED"}),
            ("POST", "/v1/jobs/j2/cancel"): (202, {"id": "j2", "status": "RUNNING", "cancel_requested": True}),
        }
    )
    assert faas(fake, "call", "cancel", "c1").stdout == "call c1 cancelled\n"
    assert "j2 is RUNNING until its node has stopped it" in faas(fake, "job", "cancel", "j2").stdout
    assert json.loads(faas(fake, "job", "cancel", "j2", "-o", "json").stdout)["cancel_requested"] is True


def _stream(fake: FakeGatewayClient, path: str, status: str) -> None:
    fake.streams[path] = [
        ("log", {"at": "2026-12-03T19:20:01+00:00", "stream": "install", "text": "Collecting six"}),
        ("log", {"at": "2026-12-03T19:20:02+00:00", "stream": "stderr", "text": "a warning"}),
        ("log", {"at": "2026-12-03T19:20:02+00:00", "stream": "stdout", "text": "hello"}),
        ("end", {"id": path.split("/")[3], "status": status}),
    ]


def test_logs_follow_in_each_form(fake: FakeGatewayClient) -> None:
    _stream(fake, "/v1/calls/c1/logs", "DONE")
    plain = faas(fake, "logs", "-f", "c1")
    assert plain.exit_code == 0 and plain.stdout == "hello\n"
    assert plain.stderr.splitlines()[:2] == ["Collecting six", "a warning"]
    table = faas(fake, "logs", "-f", "c1", "-o", "table")
    assert "install Collecting six" in table.stderr and table.stdout.endswith("hello\n")
    lines = [json.loads(line) for line in faas(fake, "logs", "-f", "c1", "-o", "json").stdout.splitlines()]
    assert [e.get("stream") for e in lines] == ["install", "stderr", "stdout", None]
    assert lines[-1] == {"id": "c1", "status": "DONE"}


def test_following_a_run_that_fails_exits_1(fake: FakeGatewayClient) -> None:
    _stream(fake, "/v1/jobs/j1/logs", "ERROR")
    result = faas(fake, "job", "logs", "j1", "-f")
    assert result.exit_code == exits.FAILED and "job j1 ended ERROR" in result.stderr


def test_stored_logs(fake: FakeGatewayClient) -> None:
    page = {"id": "c1", "lines": [{"at": "2026-12-03T19:20:01+00:00", "stream": "stderr", "text": "x"}]}
    fake.answers[("GET", "/v1/calls/c1/logs")] = (200, {**page, "truncated": True})
    result = faas(fake, "logs", "c1")
    assert result.exit_code == 0 and result.stderr.splitlines() == ["x", "[the call's output was cut at its log limit]"]
    assert json.loads(faas(fake, "logs", "c1", "-o", "json").stdout)["lines"] == page["lines"]


def test_job_run_sends_the_command_after_the_double_dash(fake: FakeGatewayClient) -> None:
    fake.answers[("POST", "/v1/jobs")] = (201, {"id": "j7", "number": 7, "status": "QUEUED"})
    result = faas(fake, "job", "run", "--priority", "7", "-e", "MODE=full", "faas-python", "--", "python3", "-c", "1")
    assert result.exit_code == 0 and result.stdout == "j7\n"
    spec = fake.sent[-1][2]["json"]
    assert spec["name"] == "faas-python" and spec["priority"] == 7
    assert spec["container"] == {"image": "faas-python", "command": ["python3", "-c", "1"], "env": {"MODE": "full"}}
    bad = faas(fake, "job", "run", "-e", "NOEQUALS", "faas-python")
    assert bad.exit_code == exits.USAGE and "NAME=VALUE" in bad.stderr


def test_job_names_from_images() -> None:
    assert default_name("registry.example/team/report:3") == "report"
    assert default_name("faas-python@sha256:abc") == "faas-python"
    assert default_name("_x.y") == "x-y"


def test_function_versions_and_deploy(fake: FakeGatewayClient, tmp_path: Path) -> None:
    detail = {"name": "dice", "version": 3, "versions": [1, 3], "runtime": "py"}
    fake.answers[("GET", "/v1/functions/dice")] = (200, detail)
    result = faas(fake, "function", "versions", "dice")
    assert [line.split() for line in result.stdout.splitlines()] == [["VERSION", "LATEST"], ["1", "no"], ["3", "yes"]]
    assert json.loads(faas(fake, "function", "versions", "dice", "-o", "json").stdout) == [1, 3]
    fake.answers[("POST", "/v1/functions")] = (201, {"name": "dice", "version": 4})
    (tmp_path / "main.py").write_text("print(1)\n")
    deployed = faas(fake, "function", "deploy", "dice", str(tmp_path), "--runtime", "py")
    assert deployed.exit_code == 0 and "version: 4" in deployed.stdout


def test_upload_progress_only_on_a_terminal() -> None:
    with upload_progress(Console(file=io.StringIO()), 1000, "uploading") as on_sent:
        assert on_sent is None
    screen = io.StringIO()
    with upload_progress(Console(file=screen, force_terminal=True, width=100), 2048, "uploading fn.zip") as on_sent:
        assert on_sent is not None
        on_sent(1024)
    shown = screen.getvalue()
    assert "uploading fn.zip" in shown and "2.0/2.0 KiB" in shown


def test_a_traceback_ends_as_one_line(fake: FakeGatewayClient) -> None:
    message = 'exit code 1: Traceback (most recent call last):\n  File "/app/main.py"\nValueError: too few\n'
    fake.answers[("POST", "/v1/functions/tb/invoke")] = (
        200,
        {**FAILED, "error": {"type": "NonZeroExit", "message": message}},
    )
    result = faas(fake, "invoke", "tb", "-o", "table", "--no-follow")
    assert result.exit_code == exits.FAILED
    assert result.stderr.strip().splitlines()[-1] == "Error: call c9 ended ERROR: NonZeroExit: ValueError: too few"
    assert 'File "/app/main.py"' in result.stderr  # the whole error, above the one line


def test_logs_of_a_call_by_its_number(fake: FakeGatewayClient) -> None:
    fake.answers[("GET", "/v1/calls/c1a2b3/logs")] = (200, {"id": "c1a2b3", "lines": []})
    assert faas(fake, "logs", "17").exit_code == 0
    assert [p for _, p, _ in fake.sent] == ["/v1/calls/17", "/v1/calls/c1a2b3/logs"]


def test_on_a_terminal_invoke_follows_the_calls_output(fake: FakeGatewayClient) -> None:
    fake.answers[("POST", "/v1/functions/dice/invoke")] = (202, {"id": "c1a2b3", "number": 17, "status": "QUEUED"})
    _stream(fake, "/v1/calls/c1a2b3/logs", "DONE")
    result = faas(fake, "invoke", "dice", "-o", "table")  # -o table: as on a terminal
    assert result.exit_code == 0, result.output
    assert fake.sent[0][2]["params"] == {"async": "true"}
    err = result.stderr
    assert err.index("install Collecting six") < err.index("hello") < err.index("DONE  dice v2")
    assert json.loads(result.stdout) == [4, 6]  # stdout: the result only


def test_ctrl_c_while_following_exits_130() -> None:
    class Interrupted(FakeGatewayClient):
        async def events(self, path: str) -> AsyncIterator[tuple[str, Any]]:
            raise KeyboardInterrupt
            yield  # an async generator, as the real one

    result = faas(Interrupted(), "logs", "-f", "c1")
    assert result.exit_code == exits.INTERRUPTED and result.stderr == "Error: interrupted\n"


def test_the_completion_script_is_clicks() -> None:
    script = CliRunner().invoke(cli, ["completion", "bash"]).stdout
    assert script == CliRunner().invoke(cli, [], prog_name="faas", env={"_FAAS_COMPLETE": "bash_source"}).stdout
    assert "_FAAS_COMPLETE=bash_complete" in script


def test_follow_gives_up_at_wait_and_says_how_to_go_on() -> None:
    class Endless(FakeGatewayClient):
        async def events(self, path: str) -> AsyncIterator[tuple[str, Any]]:
            yield "log", {"at": "2026-12-03T19:20:01+00:00", "stream": "stderr", "text": "working"}
            await asyncio.sleep(3600)

    fake = Endless({("POST", "/v1/functions/slow/invoke"): (202, {"id": "c5", "number": 5, "status": "QUEUED"})})
    result = faas(fake, "invoke", "slow", "--follow", "--wait", "0.2")
    assert result.exit_code == exits.UNAVAILABLE and "working" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: call c5 still running after --wait; follow it with: faas logs -f c5"
    )


def test_after_following_a_record_the_store_has_not_yet_is_asked_again(fake: FakeGatewayClient) -> None:
    fake.answers[("POST", "/v1/functions/dice/invoke")] = (202, {"id": "c1a2b3", "number": 17, "status": "QUEUED"})
    _stream(fake, "/v1/calls/c1a2b3/logs", "DONE")
    stored = fake.answers[("GET", "/v1/calls/c1a2b3")]
    fake.answers[("GET", "/v1/calls/c1a2b3")] = GatewayError(404, "call c1a2b3 not found")  # not stored yet
    real = fake.request

    async def storing(method: str, path: str, **kw: Any) -> tuple[int, Any]:
        try:
            return await real(method, path, **kw)
        finally:
            if path == "/v1/calls/c1a2b3":
                fake.answers[("GET", path)] = stored  # stored by the next ask

    fake.request = storing  # type: ignore[method-assign]
    result = faas(fake, "invoke", "dice", "-o", "table")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [4, 6]
