"""``nats req faas.call.<function> '<params json>'``: a synchronous call without HTTP, and
``nats req faas.cancel.<call_id> ''``: cancel a call (gateway/call_cancel.py).

The reply to a call is the call record; without its params when they would not fit beside
the result in one message. The reply to a cancel is ``{"id", "status", "cancel_requested"}``
as ``POST /v1/calls/{id}/cancel`` answers it (202 there), or an error (404, 409) with the
HTTP status as its nats.micro error code.

A nats.micro service ``faas-gateway`` (queue group ``faas-gateway``, so gateways share the
load). nats.micro awaits a handler inline, one message at a time per subscription, so a
handler that waited for its call would hold up every other caller: each request is spawned
into its own named task in the gateway's TaskSet and answered from there.
"""

import logging

from nats import micro
from nats.aio.client import Client
from nats.micro.request import Request
from nats.micro.service import Service

from common.lifecycle import TaskSet
from common.logs import fields
from gateway.call_cancel import CallCancels
from gateway.errors import GatewayError, bad_request, too_large
from gateway.invoker import Invoker
from schemas import InvalidMessage, Layout, decode_json, encode
from schemas.http import CancelRequested

log = logging.getLogger(__name__)

SERVICE_NAME = "faas-gateway"
SERVICE_VERSION = "0.1.0"
# Room for the reply's headers under the server's max payload.
_HEADROOM = 4096


class CallService:
    def __init__(
        self,
        nc: Client,
        layout: Layout,
        invoker: Invoker,
        tasks: TaskSet,
        wait_s: float,
        max_params_bytes: int,
        cancels: CallCancels | None = None,
    ) -> None:
        self._nc = nc
        self._layout = layout
        self._invoker = invoker
        self._tasks = tasks
        self._wait_s = wait_s
        self._max_params_bytes = max_params_bytes
        self._cancels = cancels
        self._service: Service | None = None
        self._stopping = False

    async def start(self) -> None:
        if self._service is not None:
            return
        self._service = await micro.add_service(
            self._nc,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="synchronous function calls: request on <prefix>.call.<function>",
            queue_group=SERVICE_NAME,
        )
        await self._service.add_endpoint(name="call", subject=self._layout.call_all, handler=self._on_request)
        if self._cancels is not None:
            await self._service.add_endpoint(name="cancel", subject=self._layout.cancel_all, handler=self._on_cancel)
        # add_endpoint does not flush: once start() returns, the server must route requests to us.
        await self._nc.flush()

    async def stop(self) -> None:
        """Stop taking requests; the ones in flight are the TaskSet owner's to wait for."""
        self._stopping = True
        service, self._service = self._service, None
        if service is not None:
            await service.stop()

    async def _on_request(self, req: Request) -> None:
        function = req.subject.rsplit(".", 1)[-1]
        self._tasks.spawn(self._serve(req, function), name=f"call:{function}", critical=False)

    async def _on_cancel(self, req: Request) -> None:
        call_id = req.subject.rsplit(".", 1)[-1]
        self._tasks.spawn(self._cancel(req, call_id), name=f"cancel:{call_id}", critical=False)

    async def _cancel(self, req: Request, call_id: str) -> None:
        assert self._cancels is not None
        try:
            status = await self._cancels.cancel(call_id)
            answer = CancelRequested(id=call_id, status=status.value, cancel_requested=True)
            await req.respond(encode(answer))
        except GatewayError as err:
            await self._respond_error(req, str(err.status), err.message)
        except Exception:
            log.exception("cancel.request.failed", extra=fields(call=call_id))
            await self._respond_error(req, "500", "internal error (logged by the gateway)")

    async def _serve(self, req: Request, function: str) -> None:
        try:
            if len(req.data) > self._max_params_bytes:
                raise too_large(f"params are more than the limit of {self._max_params_bytes} bytes")
            try:
                params = decode_json(req.data) if req.data.strip() else {}
            except InvalidMessage as err:
                raise bad_request(str(err)) from None
            outcome = await self._invoker.call(function, params, self._wait_s)
            t = outcome.ticket
            if outcome.record is None:
                if self._stopping:
                    raise GatewayError(503, "unavailable", f"gateway stopping; call {t.id} (#{t.number}) goes on")
                raise GatewayError(
                    504,
                    "timeout",
                    f"call {t.id} (#{t.number}) did not finish within {self._wait_s:g}s; it goes on",
                )
            body = outcome.record.model_dump_json().encode()
            if len(body) > self._nc.max_payload - _HEADROOM:
                # The largest params beside the largest result: the caller sent the params.
                cut = outcome.record.model_copy(update={"params": None, "params_omitted": True})
                body = cut.model_dump_json().encode()
            await req.respond(body, headers={"Faas-Call-Id": t.id})
        except GatewayError as err:
            await self._respond_error(req, str(err.status), err.message)
        except Exception:
            log.exception("call.request.failed", extra=fields(function=function))
            await self._respond_error(req, "500", "internal error (logged by the gateway)")

    async def _respond_error(self, req: Request, code: str, message: str) -> None:
        try:
            await req.respond_error(code, message)
        except Exception:
            log.warning("call.reply.failed", exc_info=True, extra=fields(code=code))
