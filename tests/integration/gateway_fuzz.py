"""The fuzz run behind tests/integration/test_gateway_fuzz.py (no tests here): schemathesis
cases for every operation of ``GET /openapi.json``, sent over HTTP to a running gateway, and
each answer checked against the description.

Synchronous (schemathesis and hypothesis are): the test runs it in a worker thread while the
platform serves it from the test's event loop.

For every operation, three passes: valid requests (positive), requests that break the schema
(negative), and valid requests with the path parameters of things that exist (the seeded
runtime, function, call, job, token), so that handlers are reached past their 404s. Every
answer must be no 5xx, a status the operation declares, of a declared content type, and a
body that matches the declared schema; a negative request must be refused with a 4xx.
"""

import collections
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
# A body over its limit is refused with 413 (schemathesis expects 4xx but not that one).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
            }
        }
    }
)
# One request's bound: a sync invoke waits at most the gateway's max_sync_wait_s.
REQUEST_TIMEOUT_S = 10.0


@dataclass
class Seeded:
    """What exists on the platform before the run, by path parameter."""

    runtime: str
    function: str
    call_id: str
    call_number: int
    job_id: str
    token_name: str

    def path_parameters(self, path: str) -> dict[str, Any] | None:
        """Path parameters naming something that exists, for a route that has some."""
        fixed: dict[str, dict[str, Any]] = {
            "/registerFunction/{runtime}/{funcName}": {"runtime": self.runtime, "funcName": self.function},
            "/call/{callNum}": {"callNum": self.call_number},
            "/v1/runtimes/{name}": {"name": self.runtime},
            "/v1/functions/{name}": {"name": self.function},
            "/v1/functions/{name}/invoke": {"name": self.function},
            "/v1/calls/{key}": {"key": self.call_id},
            "/v1/calls/{id}/logs": {"id": self.call_id},
            "/v1/jobs/{id}": {"id": self.job_id},
            "/v1/jobs/{id}/cancel": {"id": self.job_id},
            "/v1/jobs/{id}/logs": {"id": self.job_id},
            "/v1/tokens/{name}": {"name": self.token_name},
        }
        return fixed.get(path)


@dataclass
class OperationReport:
    label: str
    examples: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)


@dataclass
class FuzzReport:
    seed: int
    seconds: float = 0.0
    operations: list[OperationReport] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"{op.label}: {failure}" for op in self.operations for failure in op.failures]

    def table(self) -> str:
        """Examples sent per route and pass, and the statuses answered."""
        lines = [f"fuzz seed {self.seed}: {self.total} requests in {self.seconds:.1f} s"]
        lines.append(f"{'operation':48} {'pos':>4} {'neg':>4} {'seed':>4}  statuses")
        for op in self.operations:
            e = op.examples
            statuses = " ".join(f"{s}x{n}" for s, n in sorted(op.statuses.items()))
            lines.append(f"{op.label:48} {e['positive']:4} {e['negative']:4} {e['seeded']:4}  {statuses}")
        return "\n".join(lines)

    @property
    def total(self) -> int:
        return sum(op.examples.total() for op in self.operations)


def run_fuzz(
    spec: dict[str, Any], base_url: str, headers: dict[str, str], seeded: Seeded, max_examples: int
) -> FuzzReport:
    """Fuzz every operation of ``spec``; ``FAAS_FUZZ_SEED`` repeats a run."""
    run_seed = int(os.environ.get("FAAS_FUZZ_SEED") or random.randrange(1 << 32))
    report = FuzzReport(seed=run_seed)
    schema = schemathesis.openapi.from_dict(spec, config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last: the seeded things stay for the other routes' seeded pass.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    started = time.monotonic()
    with requests.Session() as session:
        for op in operations:
            op_report = OperationReport(op.label)
            report.operations.append(op_report)
            passes: list[tuple[str, GenerationMode, dict[str, Any] | None, int]] = [
                ("positive", GenerationMode.POSITIVE, None, max_examples),
                ("negative", GenerationMode.NEGATIVE, None, max_examples),
            ]
            fixed = seeded.path_parameters(op.path)
            if fixed is not None:
                passes.append(("seeded", GenerationMode.POSITIVE, fixed, max(1, max_examples // 2)))
            for name, mode, path_parameters, count in passes:
                kwargs: dict[str, Any] = {"generation_mode": mode}
                if path_parameters is not None:
                    kwargs["path_parameters"] = path_parameters
                if op.path.endswith("/logs"):
                    # A live log stream of a call that never ends (no agent here) would wait for
                    # ever: the fuzz reads stored logs only (the streams have their own tests).
                    kwargs["query"] = {"follow": "false"}
                strategy = op.as_strategy(**kwargs)
                if mode is GenerationMode.NEGATIVE:
                    # An empty query value means the parameter's default (README, "HTTP API"):
                    # not a request the API refuses, though the schema alone says otherwise.
                    # The only header is the token, which every request here carries (the
                    # refusals of missing and bad tokens are tests/integration/test_gateway_auth.py's).
                    strategy = strategy.filter(_no_empty_query_value).filter(_no_header_negation)
                checks = NEGATIVE_CHECKS if mode is GenerationMode.NEGATIVE else CHECKS
                failure = _run_pass(strategy, count, run_seed, session, base_url, headers, checks, op_report, name)
                if failure:
                    op_report.failures.append(f"[{name}] {failure}")
    report.seconds = time.monotonic() - started
    return report


def _no_empty_query_value(case: Any) -> bool:
    """No query value that is empty on the wire: "", an empty list, or an object (a query
    string has no objects: its keys become parameters of their own, and the named one is absent)."""
    return not any(
        v is None or v == "" or isinstance(v, dict) or (isinstance(v, list) and (not v or "" in v))
        for v in (case.query or {}).values()
    )


def _no_header_negation(case: Any) -> bool:
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
    return header is None or not header.mode.is_negative


def _run_pass(
    strategy: st.SearchStrategy[Any],
    count: int,
    run_seed: int,
    session: requests.Session,
    base_url: str,
    headers: dict[str, str],
    checks: list[Any],
    op_report: OperationReport,
    name: str,
) -> str | None:
    @seed(run_seed)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def one(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        op_report.examples[name] += 1
        op_report.statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers)

    try:
        one()
    except Unsatisfiable:
        # Nothing to break (no parameters, no body): a negative pass cannot make a request.
        op_report.examples[name] += 0
    except (Exception, BaseExceptionGroup) as err:  # the report names each failed operation; the test fails
        return f"{type(err).__name__}: {err}"[:4000]
    return None
