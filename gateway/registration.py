"""Registering and removing runtimes and functions.

Everything is validated before anything is written; then the archive goes to the object
store and only then the record to KV, so a failure leaves nothing half-registered (at most
an unreferenced archive, which a retry reuses since it is named by its digest, and which
the artifact sweep removes after its grace period otherwise).
"""

import hashlib
import json
import logging
import re
from typing import Any

from pydantic import ValidationError

from common.logs import fields
from gateway.archive import ArchiveError, validate_archive
from gateway.errors import GatewayError, bad_request, check_name, invalid, too_large
from gateway.functions import Functions
from gateway.runtimes import Runtimes
from schemas import FunctionRecord, InvalidMessage, Limits, RuntimeSpec, decode
from schemas.function import HANDLER_PATTERN, MAX_CALLS
from schemas.http import SequenceRequest

log = logging.getLogger(__name__)


def parse_runtime(body: Any) -> RuntimeSpec:
    if not isinstance(body, dict):
        raise bad_request("invalid runtime: expected a JSON object")
    if isinstance(body.get("name"), str) and body["name"]:
        check_name("runtime", body["name"])
    try:
        return RuntimeSpec.model_validate(body)
    except ValidationError as err:
        raise invalid(err, "runtime") from None


async def register_runtime(runtimes: Runtimes, body: Any) -> RuntimeSpec:
    spec = await runtimes.put(parse_runtime(body))
    log.info("runtime.registered", extra=fields(runtime=spec.name, image=spec.image))
    return spec


async def delete_runtime(runtimes: Runtimes, functions: Functions, name: str) -> None:
    check_name("runtime", name)
    await runtimes.get(name)
    users = [f.name for f in await functions.all() if f.runtime == name]
    if users:
        raise GatewayError(409, "conflict", f"runtime {name!r} is used by functions: {', '.join(users)}")
    await runtimes.delete(name)
    log.info("runtime.deleted", extra=fields(runtime=name))


def parse_limits(raw: str | None) -> Limits:
    if raw is None or not raw.strip():
        return Limits()
    try:
        return decode(Limits, raw)
    except InvalidMessage as err:
        raise bad_request(f"invalid limits: {err}") from None


async def register_function(
    runtimes: Runtimes,
    functions: Functions,
    *,
    name: str,
    runtime: str,
    archive: bytes,
    limits: Limits,
    max_upload_bytes: int,
    max_uncompressed_bytes: int,
    handler: str | None = None,
    calls: list[str] | None = None,
) -> FunctionRecord:
    check_name("function", name)
    check_name("runtime", runtime)
    if len(archive) > max_upload_bytes:
        raise too_large(f"module is larger than {max_upload_bytes} bytes")
    if not archive:
        raise bad_request("module is empty")
    if handler and not re.match(HANDLER_PATTERN, handler):
        raise bad_request(f"handler {handler!r} is not 'module' or 'module:function'")
    spec = await runtimes.get(runtime)
    if handler and not spec.handler_command:
        raise bad_request(
            f"runtime {runtime!r} has no handler_command, so it cannot serve handler {handler!r};"
            " register the runtime with one (e.g. 'python3 /opt/faas/faas_bootstrap.py') or omit 'handler'"
        )
    try:
        info = validate_archive(archive, max_uncompressed_bytes)
    except ArchiveError as err:
        raise GatewayError(400, "invalid_archive", str(err)) from None

    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    draft = {
        "name": name,
        "runtime": runtime,
        "digest": digest,
        "size": len(archive),
        "archive": info.format,
        "has_dependencies": info.has_dependencies,
        "limits": limits,
        "handler": handler or None,
        "calls": calls or [],
    }
    await functions.store_archive(digest, archive)
    record = await functions.add_version(draft)
    # Once more: an archive no version kept (the same code as a removed version) may have
    # been swept between the two steps; the version now keeps it.
    await functions.store_archive(digest, archive)
    log.info(
        "function.registered",
        extra=fields(function=name, version=record.version, runtime=runtime, digest=digest, size=len(archive)),
    )
    return record


def parse_calls(raw: str | None) -> list[str]:
    """The ``calls`` allow-list field: function names, comma- or space-separated."""
    names = list(dict.fromkeys((raw or "").replace(",", " ").split()))
    for name in names:
        check_name("function", name)
    if len(names) > MAX_CALLS:
        raise bad_request(f"calls names more than {MAX_CALLS} functions")
    return names


async def register_sequence(functions: Functions, body: Any) -> FunctionRecord:
    """A sequence: a version whose steps are registered functions (the first one's runtime
    carries it), with no archive: its digest is that of its steps."""
    try:
        request = SequenceRequest.model_validate(body)
    except ValidationError as err:
        raise invalid(err, "sequence") from None
    steps = [await functions.get(step) for step in request.steps]
    limits = Limits() if request.timeout_s is None else Limits(timeout_s=request.timeout_s)
    digest = "sha256:" + hashlib.sha256(json.dumps(request.steps).encode()).hexdigest()
    draft = {
        "name": request.name,
        "runtime": steps[0].runtime,
        "digest": digest,
        "size": 0,
        "archive": "zip",
        "limits": limits,
        "sequence": request.steps,
    }
    record = await functions.add_version(draft)
    log.info("sequence.registered", extra=fields(function=request.name, version=record.version, steps=len(steps)))
    return record


async def delete_function(functions: Functions, name: str) -> None:
    check_name("function", name)
    await functions.delete(name)
    log.info("function.deleted", extra=fields(function=name))
