"""What route handlers get from the composition root (through the aiohttp app)."""

from dataclasses import dataclass

from aiohttp import web
from nats.aio.client import Client

from common.metrics import Metrics
from gateway.call_cancel import CallCancels
from gateway.callback_guard import CallbackGuard
from gateway.functions import Functions
from gateway.invoker import Invoker
from gateway.jobs import Jobs
from gateway.log_stream import LogStreams
from gateway.routing import NodeRouter
from gateway.runtimes import Runtimes
from gateway.settings import GatewaySettings
from gateway.store_client import StoreClient
from gateway.tokens import Tokens


@dataclass(frozen=True)
class Deps:
    settings: GatewaySettings
    nc: Client
    runtimes: Runtimes
    functions: Functions
    invoker: Invoker
    store: StoreClient
    jobs: Jobs
    log_streams: LogStreams
    callback_guard: CallbackGuard
    tokens: Tokens
    router: NodeRouter
    metrics: Metrics
    call_cancels: CallCancels


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]
