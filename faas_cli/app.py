"""What every command shares: the gateway client, the output form, and how a failure
becomes one line and an exit code (faas_cli/exits.py)."""

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click

from faas_cli import exits
from faas_cli.client import Client, GatewayError, find_token
from faas_cli.render import Mode, Renderer, auto_mode

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
OUTPUT_CHOICE = click.Choice([m.value for m in Mode])


@dataclass
class App:
    """The root command's options; ``client`` and ``render`` are made when a command first
    needs them (``faas up`` needs neither)."""

    gateway: str
    token: str | None
    data_dir: Path
    mode: Mode | None = None
    # A client to use instead of one made from the options (a unit test's fake gateway).
    preset: Client | None = field(default=None, repr=False)
    _render: Renderer | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> Client:
        if self.preset is None:
            try:
                found, source = find_token(self.token, self.data_dir)
            except GatewayError as err:
                raise exits.CliError(str(err), exits.AUTH) from None
            self.preset = Client(self.gateway, found, source)
        return self.preset

    @property
    def render(self) -> Renderer:
        if self._render is None:
            self._render = Renderer(self.mode or auto_mode())
        return self._render

    def set_mode(self, mode: Mode) -> None:
        self.mode, self._render = mode, None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of the client's coroutines; a failure is an ``exits.CliError``."""
        try:
            return asyncio.run(coro)
        except KeyboardInterrupt:
            # Ctrl-C while following or waiting: the call or job goes on where it runs.
            raise exits.CliError("interrupted", exits.INTERRUPTED) from None
        except GatewayError as err:
            raise exits.CliError(str(err), exits.for_status(err.status) if err.status else exits.AUTH) from None
        except (OSError, aiohttp.ClientError, TimeoutError) as err:
            reason = str(err) or type(err).__name__
            raise exits.CliError(f"cannot reach the gateway at {self.gateway}: {reason}", exits.UNAVAILABLE) from None


def _set_mode(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    app = ctx.find_object(App)
    if value is not None and app is not None:
        app.set_mode(Mode(value))


def output_option(f: F) -> F:
    """``-o/--output table|plain|json`` on a command (the root's ``-o`` works too)."""
    return click.option(
        "-o",
        "--output",
        type=OUTPUT_CHOICE,
        default=None,
        expose_value=False,
        callback=_set_mode,
        help="table (default on a terminal), plain (default when piped) or json (the API's answer).",
    )(f)


pass_app = click.make_pass_decorator(App)


def with_app(f: Callable[..., T]) -> Callable[..., T]:
    """Pass the ``App`` as the first argument, and give the command ``-o``."""
    return output_option(pass_app(f))
