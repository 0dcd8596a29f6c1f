"""A job's secrets on the node: opened just before use, masked wherever they could show.

The gateway sealed them (``JobMessage.sealed``) with the platform's secrets key; this node
opens them with its copy (``AgentSettings.secrets_key_file``) right before it pulls the image
and creates the container, checks they were sealed for this very job (id, image, command,
env: ``schemas.jobs.secrets_binding``), and keeps them in memory for that run only. Errors
say why without a value; the job's output and error messages are masked (:class:`Redactor`).
"""

from collections.abc import Iterable

from common.sealing import SealError, SecretsKey
from node_agent.errors import AgentError
from schemas import InvalidMessage, JobMessage, JobSecrets, decode
from schemas.jobs import secrets_binding

MASK = "***"


class SecretsUnavailable(AgentError):
    """A job's secrets that this node cannot open: the job ends ERROR, never runs without them."""

    kind = "SecretsUnavailable"


def open_secrets(job: JobMessage, key: SecretsKey | None) -> JobSecrets:
    """The job's secrets in clear (none if it has none)."""
    if job.sealed is None:
        return JobSecrets(job_id=job.id, binding=secrets_binding(job.id, job.spec.container))
    if key is None:
        raise SecretsUnavailable("the job has sealed secrets but this node has no secrets key (secrets_key_file)")
    try:
        secrets = decode(JobSecrets, key.open(job.sealed))
    except SealError as err:
        raise SecretsUnavailable(f"cannot open the job's secrets: {err}") from None
    except InvalidMessage:
        raise SecretsUnavailable("the job's sealed secrets are not in the expected form") from None
    if secrets.job_id != job.id or secrets.binding != secrets_binding(job.id, job.spec.container):
        raise SecretsUnavailable("the job's secrets were sealed for another job (its id, image, command or env differ)")
    return secrets


class Redactor:
    """Replaces each secret value in a text with ``***``. Values shorter than ``MIN_CHARS``
    are left alone: masking every "1" or "on" would garble output and hide nothing."""

    MIN_CHARS = 4

    def __init__(self, values: Iterable[str]) -> None:
        # longest first: a value that contains another is masked whole
        self._values = sorted({v for v in values if len(v) >= self.MIN_CHARS}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text
