"""Call and job statuses: the same order of progress (schemas.status), the same wire form."""

import pytest

from schemas import CallRecord, CallStatus, JobStatus
from schemas.status import Progress


@pytest.mark.parametrize("statuses", [CallStatus, JobStatus], ids=lambda e: e.__name__)
def test_queued_then_running_then_final(statuses: type[Progress]) -> None:
    queued, running = statuses("QUEUED"), statuses("RUNNING")
    assert (queued.rank, running.rank) == (0, 1)
    assert not queued.terminal and not running.terminal
    final = [s for s in statuses if s not in (queued, running)]
    assert final and all(s.terminal and s.rank == 2 for s in final)


def test_a_status_is_its_name_on_the_wire() -> None:
    assert CallStatus.DONE == "DONE" and JobStatus.FINISHED == "FINISHED"
    record = CallRecord(id="c1", number=1, status=CallStatus.TIMEOUT)
    assert '"status":"TIMEOUT"' in record.model_dump_json()
    assert CallRecord.model_validate_json(record.model_dump_json()).status is CallStatus.TIMEOUT
