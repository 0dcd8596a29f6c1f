"""The CLI's exit codes, and the one exception that carries them to the shell.

Every failure ends as one line on stderr (``Error: ...``) and one of these codes, so that a
script can tell "the function failed" from "the gateway is down" without parsing text.
"""

import click

OK = 0
FAILED = 1  # the call or job ran and ended ERROR, TIMEOUT or CANCELLED
USAGE = 2  # a bad option or argument (click's own code)
NOT_FOUND = 3  # 404: no such runtime, function, call, job or token
AUTH = 4  # 401 / 403: no valid token, or its role may not do this
CONFLICT = 5  # 409: e.g. cancelling what has ended, deleting a runtime in use
UNAVAILABLE = 6  # the gateway unreachable, 502/503, or a wait that ran out
REFUSED = 7  # any other error answer (400, 413, 415, 500, ...): the request was refused
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

_BY_STATUS = {404: NOT_FOUND, 401: AUTH, 403: AUTH, 409: CONFLICT, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}


def for_status(status: int) -> int:
    """The exit code of an HTTP error status."""
    return _BY_STATUS.get(status, REFUSED)


class CliError(click.ClickException):
    """A failure shown as ``Error: <message>`` on stderr, exiting with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # a ClassVar in click, read from the instance
