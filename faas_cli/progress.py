"""A progress bar on stderr while an archive uploads (only when stderr is a terminal: a pipe
or a log file gets no bar)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextmanager
def upload_progress(console: Console, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """Yields the ``on_sent(bytes_so_far)`` callback to give the upload, or None without a
    terminal. The bar ends full once the gateway has answered (it stores the archive first)."""
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def on_sent(done: int) -> None:
            bar.update(task, completed=min(done, total))

        yield on_sent
        bar.update(task, completed=total)
