"""``faas completion bash|zsh|fish``: the shell completion script (click's), to source."""

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL: `eval "$(faas completion bash)"` in ~/.bashrc.

    It completes commands, options, and runtime and function names (asked of the gateway)."""
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(root.command, {}, "faas", "_FAAS_COMPLETE").source(), nl=False)
