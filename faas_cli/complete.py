"""Shell completion of runtime and function names (click's completion, asked of the gateway).

``_FAAS_COMPLETE=bash_source faas`` prints the script (zsh_source, fish_source likewise).
Completing a name asks the gateway with the root command's ``--gateway`` / ``--token`` /
``--data-dir``, waiting at most ``TIMEOUT_S``; a gateway that does not answer completes nothing.
"""

import asyncio
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from faas_cli.client import Client, find_token

TIMEOUT_S = 2.0


async def _names(client: Client, path: str) -> list[str]:
    async with asyncio.timeout(TIMEOUT_S):
        items = await client.get(path)
    return [str(item["name"]) for item in items if isinstance(item, dict) and "name" in item]


def _complete(ctx: click.Context, path: str, incomplete: str) -> list[CompletionItem]:
    params = ctx.find_root().params
    try:
        token, source = find_token(params.get("token"), Path(params.get("data_dir") or "data"))
        client = Client(params.get("gateway") or "http://127.0.0.1:8080", token, source)
        names = asyncio.run(_names(client, path))
    except Exception:
        # Any failure (no gateway, no token, a timeout): no names. Completion runs inside the
        # user's shell at each Tab, where a traceback would be printed into the command line.
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def runtime_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _complete(ctx, "/v1/runtimes", incomplete)


def function_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _complete(ctx, "/v1/functions", incomplete)
