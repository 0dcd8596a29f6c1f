"""All the CLI prints, in one place, in one of three forms:

- ``table`` (the default on a terminal): rich tables, statuses in colour, times local;
- ``plain`` (the default when stdout is a pipe or a file): the same columns as aligned text,
  no colour, no box: for ``grep``, ``less`` and people reading logs;
- ``json`` (``-o json``): exactly the JSON the gateway answered, indented, for scripts.

Progress and live install output go to stderr, so stdout holds only the answer.
"""

import json
import sys
from enum import StrEnum
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from faas_cli.views import VIEWS, flatten, kind_of, pick, text

STATUS_STYLE = {
    "QUEUED": "dim",
    "RUNNING": "cyan",
    "DONE": "green",
    "FINISHED": "green",
    "ERROR": "bold red",
    "TIMEOUT": "yellow",
    "CANCELLED": "magenta",
}
STREAM_STYLE = {"stdout": "", "stderr": "red", "install": "blue"}


class Mode(StrEnum):
    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"


def auto_mode(stream: TextIO | None = None) -> Mode:
    """Tables for a person at a terminal, plain text for a pipe."""
    stream = stream or sys.stdout
    return Mode.TABLE if stream.isatty() else Mode.PLAIN


def _styled(value: str, kind: str) -> str:
    style = STATUS_STYLE.get(value, "") if kind == "status" else ""
    return f"[{style}]{escape(value)}[/]" if style else escape(value)


class Renderer:
    """Prints answers in ``mode``; ``out``/``err`` consoles are made on first use (so that
    they write to whatever sys.stdout/sys.stderr are then: click's test runner swaps them)."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = Console(highlight=False, soft_wrap=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = Console(stderr=True, highlight=False)
        return self._err

    # --- answers -----------------------------------------------------------------------
    def json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def json_line(self, value: Any) -> None:
        """One compact JSON object on a line of its own (a stream of them: JSON lines)."""
        click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def listing(self, view: str, rows: list[dict[str, Any]], raw: Any = None) -> None:
        """Rows of a list answer as a ``view``; ``-o json`` prints ``raw`` (default: rows)."""
        if self.mode is Mode.JSON:
            self.json(rows if raw is None else raw)
            return
        columns = VIEWS[view]
        short = self.mode is Mode.TABLE
        cells = [[text(pick(row, c.key), c.kind, short) for c in columns] for row in rows]
        if self.mode is Mode.PLAIN:
            headers = [c.header.replace(" ", "_") for c in columns]
            widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
            for line in [headers, *cells]:
                click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
            return
        if not rows:
            self.err.print(f"[dim]no {view}[/]")
            return
        # Two spaces between columns; a header is never split, ids never wrap: the long free
        # text (images, commands) folds instead when the terminal is narrow.
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False, collapse_padding=True)
        for c in columns:
            fixed = c.kind in {"id", "time", "status", "ms", "bool", "seconds"}
            table.add_column(c.header, overflow="fold", no_wrap=fixed, min_width=len(c.header))
        for row in cells:
            table.add_row(*(_styled(v, c.kind) for v, c in zip(row, columns, strict=True)))
        self.out.print(table)

    def record(self, record: dict[str, Any], raw: Any = None) -> None:
        """One record, a field a line (nested objects as ``a.b``)."""
        if self.mode is Mode.JSON:
            self.json(record if raw is None else raw)
            return
        fields = [(k, text(v, kind_of(k)), kind_of(k)) for k, v in flatten(record)]
        if self.mode is Mode.PLAIN:
            width = max((len(k) for k, _, _ in fields), default=0)
            for k, v, _ in fields:
                click.echo(f"{k + ':':<{width + 1}} {v}")
            return
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column(overflow="fold")
        for k, v, kind in fields:
            grid.add_row(k, _styled(v, kind))
        self.out.print(grid)

    def tree(self, lines: list[str], raw: Any) -> None:
        """A tree drawn as text lines (``faas_cli/tree.py``): the same on a terminal and piped,
        ``raw`` with ``-o json``."""
        if self.mode is Mode.JSON:
            self.json(raw)
            return
        for line in lines:
            click.echo(line)

    def done(self, message: str, raw: Any) -> None:
        """The answer of an action (delete, cancel, revoke): a sentence, or ``raw`` as JSON."""
        if self.mode is Mode.JSON:
            self.json(raw)
        elif self.mode is Mode.PLAIN:
            click.echo(message)
        else:
            self.out.print(f"[green]✓[/] {escape(message)}")

    def note(self, message: str) -> None:
        """A remark for the person (never for a script): stderr, and not with ``-o json``."""
        if self.mode is Mode.TABLE:
            self.err.print(f"[dim]{escape(message)}[/]")
        elif self.mode is Mode.PLAIN:
            click.echo(message, err=True)

    # --- live output -------------------------------------------------------------------
    def log_line(self, entry: dict[str, Any], all_to_stderr: bool = False) -> None:
        """One line of a call's or job's output: ``json``, one object a line; ``plain``, the
        text; ``table``, with its time, stderr in red and dependency installs in blue.
        stdout's lines go to stdout, the others to stderr (all of them with ``all_to_stderr``,
        when stdout is kept for a result)."""
        stream = str(entry.get("stream", "stdout"))
        line = str(entry.get("text", ""))
        to_err = all_to_stderr or stream != "stdout"
        if self.mode is Mode.JSON:
            click.echo(json.dumps(entry, ensure_ascii=False, separators=(",", ":")), err=all_to_stderr)
        elif self.mode is Mode.PLAIN:
            click.echo(line, err=to_err)
        else:
            at = text(entry.get("at"), "time")[-8:]  # the time of day
            tag = "install " if stream == "install" else ""
            style = STREAM_STYLE.get(stream, "")
            body = f"[{style}]{tag}{escape(line)}[/]" if style else escape(line)
            (self.err if to_err else self.out).print(f"[dim]{at}[/] {body}", soft_wrap=True)

    # --- a call's outcome ----------------------------------------------------------------
    def outcome(self, record: dict[str, Any]) -> None:
        """A finished call: ``json``, its record; ``plain``, its result alone (a string as
        is, anything else as JSON), so that ``faas invoke f | jq`` works; ``table``, a summary
        line and the result, or the whole error."""
        if self.mode is Mode.JSON:
            self.json(record)
            return
        result = record.get("result")
        if self.mode is Mode.PLAIN:
            if record.get("status") == "DONE":
                click.echo(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False))
            return
        status = str(record.get("status"))
        parts = [
            f"{record.get('function')} v{record.get('version')}",
            f"call {record.get('id')} (#{record.get('number')})",
            text(record.get("duration_ms"), "ms"),
            text(record.get("served")),
        ]
        self.err.print(f"{_styled(status, 'status')}  [dim]{escape(' · '.join(parts))}[/]")
        if status == "DONE":
            if isinstance(result, str):
                self.out.print(escape(result), soft_wrap=True)
            else:
                self.out.print_json(data=result)
        elif error := record.get("error"):
            self.err.print(f"[red]{escape(str(error.get('type')))}: {escape(str(error.get('message')))}[/]")
