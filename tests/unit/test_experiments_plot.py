"""Plotting a tiny calls CSV into a temporary directory."""

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from experiments.__main__ import main
from experiments.results import CallRow, CsvWriter

PNG = b"\x89PNG\r\n\x1a\n"


def rows() -> list[CallRow]:
    out = []
    for policy, base in (("none", 400.0), ("warm-runtime", 120.0), ("warm-function", 9.0)):
        for pattern in ("prepare", "sequential", "burst", "poisson"):
            for fn in ("py", "node-deps"):
                for i in range(4):
                    cold = policy == "none" or (policy == "warm-runtime" and fn == "node-deps") or i == 0
                    out.append(
                        CallRow(
                            policy=policy,
                            function=fn,
                            language="python" if fn == "py" else "node",
                            protocol="handler",
                            deps=fn.endswith("deps"),
                            pattern=pattern,
                            call_index=i,
                            call_id=f"{policy}-{pattern}-{fn}-{i}",
                            submitted=1000.0 + i,
                            finished=1000.5 + i,
                            latency_ms=base * (1 + i / 10) * (3 if cold and policy != "none" else 1),
                            status="ERROR" if i == 3 and policy == "none" else "DONE",
                            start="cold" if cold else "warm",
                        )
                    )
    return out


def test_plot_writes_readable_pngs_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "calls.csv"
    CsvWriter(csv_path).append(rows())
    assert main(["plot", "--csv", str(csv_path), "--out", str(tmp_path / "figs")]) == 0
    for name in ("latency_cdf.png", "latency_box.png", "cold_starts.png"):
        data = (tmp_path / "figs" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    summary = (tmp_path / "figs" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 3 * 3 * 2  # policies x patterns x functions; "prepare" left out
    out = capsys.readouterr().out
    assert "warm-function" in out and "latency_cdf.png" in out


def test_plot_of_an_empty_csv_says_so(tmp_path: Path) -> None:
    csv_path = tmp_path / "calls.csv"
    CsvWriter(csv_path)
    with pytest.raises(SystemExit, match="no measured calls"):
        main(["plot", "--csv", str(csv_path), "--out", str(tmp_path)])


def test_bad_workload_arguments_exit_2(tmp_path: Path) -> None:
    assert main(["plot", "--policies", "lukewarm", "--out", str(tmp_path)]) == 2
