"""The per-call CSV of the experiments and its summary statistics (pure)."""

from pathlib import Path

import pytest

from experiments.results import FIELDS, CallRow, CsvWriter, read_rows
from experiments.summarize import groups, measured, text_table, write_summary


def row(policy: str = "none", pattern: str = "sequential", latency: float = 10.0, **over: object) -> CallRow:
    base: dict[str, object] = dict(
        policy=policy,
        function="py",
        language="python",
        protocol="handler",
        deps=False,
        pattern=pattern,
        call_index=0,
        call_id="c1",
        submitted=1_700_000_000.123456,
        finished=1_700_000_000.223456,
        latency_ms=latency,
        status="DONE",
        start="cold",
    )
    base.update(over)
    return CallRow(**base)  # type: ignore[arg-type]


def test_rows_round_trip_through_the_csv(tmp_path: Path) -> None:
    path = tmp_path / "out" / "calls.csv"
    rows = [
        row(),
        row(policy="warm-function", start="warm", deps=True, queue_ms=1.5, error='x, "quoted"\nline'),
        row(status="ERROR", start="", gateway_in_ms=None),
    ]
    w = CsvWriter(path)
    assert w.append(rows[:2]) == 2
    CsvWriter(path).append(rows[2:])  # a second writer appends, no second header
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == FIELDS and sum(line.startswith("policy,") for line in lines) == 1
    back = list(read_rows(path))
    assert [r.policy for r in back] == ["none", "warm-function", "none"]
    assert back[1].deps is True and back[1].queue_ms == 1.5 and back[1].error == 'x, "quoted"\nline'
    assert back[0].submitted == pytest.approx(1_700_000_000.123456) and back[0].latency_ms == 10.0
    assert back[2].gateway_in_ms is None and not back[2].ok and back[0].cold and not back[1].cold


def test_reading_another_csv_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        list(read_rows(path))


def test_groups_summarise_successful_latencies_and_count_cold_and_failed() -> None:
    rows = [
        row(latency=10),
        row(latency=20),
        row(latency=30, start="warm"),
        row(latency=999, status="TIMEOUT"),
        row(pattern="prepare", latency=5000),
        row(policy="warm-function", latency=2, start="warm"),
    ]
    gs = groups(measured(rows))
    assert [(g.policy, g.pattern) for g in gs] == [("none", "sequential"), ("warm-function", "sequential")]
    none = gs[0]
    assert (none.calls, none.failed, none.cold) == (4, 1, 3)
    assert none.p50_ms == 20 and none.max_ms == 30 and none.mean_ms == pytest.approx(20)
    assert none.cold_share == pytest.approx(0.75)
    by_policy = groups(measured(rows), by=("policy",))
    assert [(g.policy, g.function, g.pattern, g.calls) for g in by_policy] == [
        ("none", "*", "*", 4),
        ("warm-function", "*", "*", 1),
    ]


def test_a_group_of_failures_only_has_no_latency(tmp_path: Path) -> None:
    (g,) = groups([row(status="ERROR")])
    assert g.p50_ms is None and g.failed == 1
    assert "-" in text_table([g])
    write_summary(tmp_path / "s.csv", [g])
    header, line = (tmp_path / "s.csv").read_text().splitlines()
    assert header.endswith("cold_share") and line.startswith("none,py,sequential,1,1,1,")
