"""The benchmark's pure parts: statistics, call phases, the table and its targets."""

import argparse

import pytest

from bench.client import CallResult, phases_ms
from bench.profile import library_of, parse_collapsed, self_time
from bench.report import Row, at_least, at_most, rows_of, table
from bench.run import QUICK, Sizes, sizes_from
from bench.stats import pct, summary


def test_percentiles_by_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert pct(values, 50) == 51 and pct(values, 95) == 95 and pct(values, 99) == 99 and pct(values, 100) == 100
    assert pct([3.0], 99) == 3.0
    s = summary([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4 and s["p50"] == 2.5 and s["min"] == 1 and s["max"] == 4 and s["mean"] == 2.5
    assert summary([]) == {"n": 0}
    with pytest.raises(ValueError):
        pct([], 50)


def test_phases_from_the_record_timestamps() -> None:
    call = CallResult(
        function="f",
        submitted=100.000,
        finished=100.010,
        latency_ms=10.0,
        http_status=200,
        status="DONE",
        record={
            "created_at": "1970-01-01T00:01:40.002000Z",
            "started_at": "1970-01-01T00:01:40.005000+00:00",
            "finished_at": "1970-01-01T00:01:40.008000Z",
        },
    )
    ph = phases_ms(call)
    assert ph is not None
    assert {k: round(v, 3) for k, v in ph.items()} == {"gateway_in": 2, "queue": 3, "agent_run": 3, "return": 2}
    call.record = {"created_at": "1970-01-01T00:01:40Z"}
    assert phases_ms(call) is None


def test_targets_and_the_table() -> None:
    assert at_most(2.9, 3) is True and at_most(3.1, 3) is False and at_most(None, 3) is None
    assert at_least(1000, 1000) is True and at_least(999, 1000) is False
    rows = [
        Row("floor", {"n": 3, "p50": 250.0, "p95": 300.0, "p99": 310.0}),
        Row("tp", {"n": 10}, unit="calls/s", value=420.7, target=">= 1000", ok=False),
        Row("wf", {"n": 5, "p50": 2.5, "p95": 3.5, "p99": 4.0}, target="p50 <= 3 ms", ok=True),
    ]
    text = table(rows)
    lines = text.splitlines()
    assert len(lines) == 5 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert "MISS" in lines[3] and "421" in lines[3] and "PASS" in lines[4] and "2.50" in lines[4]
    assert len({len(line) for line in lines}) == 1  # aligned


def test_rows_of_a_result_judge_each_target() -> None:
    lat = {"n": 10, "p50": 350.0, "p95": 400.0, "p99": 410.0}
    ok = {"count": 0, "statuses": {}, "examples": []}
    res = {
        "floors": {
            "json_line": {"n": 5, "p50": 0.3},
            "one_shot_wait": {"n": 5, "p50": 50.0},
        },
        "none": {
            "latency": lat,
            "failures": ok,
            "cold_calls": 10,
            "floor": {"n": 10, "p50": 300.0},
            "floor_network_disabled": {"n": 10, "p50": 200.0},
        },
        "warm-runtime": {
            "latency": {"n": 10, "p50": 25.0},
            "latency_served_warm": {"n": 9, "p50": 24.0},
            "failures": ok,
            "cold_calls": 1,
            "paced": {"latency": {"n": 5, "p50": 20.0}, "failures": ok, "cold_calls": 0},
            "handler": {
                "latency": {"n": 10, "p50": 40.0},
                "latency_served_warm": {"n": 10, "p50": 40.0},
                "failures": ok,
                "cold_calls": 0,
            },
        },
        "warm-function": {
            "latency": {"n": 100, "p50": 9.0},
            "failures": {"count": 2, "statuses": {"ERROR": 2}, "examples": []},
            "throughput": [
                {"concurrency": 1, "calls": 100, "calls_per_s": 500.0, "latency": {"p50": 2.0}, "failures": ok},
                {"concurrency": 8, "calls": 100, "calls_per_s": 300.0, "latency": {"p50": 20.0}, "failures": ok},
                {"concurrency": 64, "calls": 100, "calls_per_s": 1200.0, "latency": {"p50": 50.0}, "failures": ok},
            ],
        },
    }
    verdicts = {r.name: r.verdict for r in rows_of(res)}
    assert verdicts["none: cold call (command), HTTP sync"] == "PASS"  # 350 <= 1.3 x 300
    assert verdicts["warm-runtime: no deps (command), HTTP sync"] == "PASS"
    assert verdicts["  paced: each call once the pool is refilled"] == "PASS"
    assert verdicts["warm-runtime: handler, HTTP sync"] == "MISS"
    assert verdicts["warm-function: handler, HTTP sync"] == "MISS"
    # one client's rate is 1/latency: no throughput verdict; concurrent levels have one
    assert verdicts["warm-function throughput, 1 clients"] == ""
    assert verdicts["warm-function throughput, 8 clients"] == "MISS"
    assert verdicts["warm-function throughput, 64 clients"] == "PASS"
    notes = {r.name: r.note for r in rows_of(res)}
    assert "1.17x floor; 1.75x the NetworkDisabled floor" in notes["none: cold call (command), HTTP sync"]
    assert "2 failed" in notes["warm-function: handler, HTTP sync"]


def test_sizes_from_flags() -> None:
    none = dict.fromkeys(
        (
            "cold_calls",
            "rt_calls",
            "rt_paced_calls",
            "tp_calls",
            "slots",
            "wait_quiet",
            "log_level",
            "profile",
            "new_functions",
        )
    )
    ns = argparse.Namespace(quick=True, calls=50, tp_seconds=1.5, levels="2,4", **none)
    s = sizes_from(ns)
    assert s.wf_calls == 50 and s.tp_seconds == 1.5 and s.levels == (2, 4) and s.cold_calls == QUICK.cold_calls
    full = sizes_from(argparse.Namespace(**{**vars(ns), "quick": False, "calls": None, "levels": None}))
    assert full.wf_calls == Sizes().wf_calls and full.levels == (1, 8, 64)


def test_profile_self_time_by_library() -> None:
    raw = "\n".join(
        [
            "<module> (gateway/__main__.py:5);run (asyncio/base_events.py:10);"
            "EpollSelector.select (selectors.py:468) 30",
            "<module> (gateway/__main__.py:5);emit (logging/__init__.py:1100) 10",
            "<module> (gateway/__main__.py:5);publish (/x/site-packages/nats/aio/client.py:700) 5",
            "<module> (gateway/__main__.py:5);call (/work/main/gateway/invoker.py:90) 5",
            "garbage line",
            "",
        ]
    )
    stacks = parse_collapsed(raw)
    assert len(stacks) == 4
    st = self_time(stacks)
    assert st["busy_samples"] == 20 and st["idle_samples"] == 30
    assert st["self_share"] == {"logging/__init__.py": 0.5, "nats/aio/client.py": 0.25, "faas:gateway/invoker.py": 0.25}
    assert library_of("f (store/app.py:3)") == "faas:store/app.py"


def test_function_archives_are_reproducible() -> None:
    import io
    import zipfile

    from bench.functions import FUNCTIONS

    for fn in FUNCTIONS.values():
        data = fn.archive()
        assert data == fn.archive()
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert sorted(zf.namelist()) == sorted(fn.files)
    assert {f.name for f in FUNCTIONS.values() if f.has_dependencies} == {"py-deps", "node-deps"}
