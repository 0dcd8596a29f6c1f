"""The soak's memory readings and its report (bench/soak.py)."""

import os

from bench.soak import Soak, parse, rss_kib


def test_rss_of_a_live_process_and_of_none() -> None:
    mine = rss_kib(os.getpid())
    assert mine is not None and mine > 1024  # a Python process holds more than 1 MiB
    assert rss_kib(2**22 + 1) is None  # above the kernel's pid_max: no such process


def test_the_report_says_memory_per_process_and_lost_calls() -> None:
    soak = Soak(minutes=1, rate=20, sync_share=0.5)
    soak.samples = [
        {"t": 0.0, "store": 100 * 1024, "gateway": 80 * 1024},
        {"t": 10.0, "store": 130 * 1024, "gateway": 81 * 1024},
        {"t": 20.0, "store": 120 * 1024},  # the gateway was between two lives
    ]
    soak.sent, soak.accepted, soak.done, soak.lost = 3, {"a": "async", "b": "sync", "c": "sync"}, 2, ["c"]
    assert soak.memory() == {
        "gateway": {"first": 80.0, "last": 81.0, "max": 81.0},
        "store": {"first": 100.0, "last": 120.0, "max": 130.0},
    }
    report = soak.report()
    assert "store             100.0     120.0    130.0       +20.0" in report
    assert "3 accepted (1 async, 2 sync), 2 recorded DONE, lost 1" in report


def test_arguments_are_checked() -> None:
    args = parse(["--minutes", "1", "--rate", "5"])
    assert args.minutes == 1 and args.rate == 5 and args.sync_share == 0.5 and args.sample_s == 10
