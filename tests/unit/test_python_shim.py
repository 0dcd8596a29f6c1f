"""The Python shim's choice of running a warm-runtime command in a fork of its interpreter
(the run itself is tested on real Docker in tests/e2e/test_warm_runtime.py)."""

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

SHIM = Path(__file__).parents[2] / "runtimes" / "python" / "bootstrap" / "faas_fork.py"


@pytest.fixture(scope="module")
def shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faas_fork", SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_this_interpreter_running_a_script_with_plain_words_is_forked(shim: ModuleType) -> None:
    exe = shlex.quote(sys.executable)
    assert shim.python_command(f"{exe} main.py") == [sys.executable, "main.py"]
    assert shim.python_command(f"{exe} src/app.py a 'b c' --flag=1") == [
        sys.executable,
        "src/app.py",
        "a",
        "b c",
        "--flag=1",
    ]


@pytest.mark.parametrize(
    "run",
    [
        "{exe} main.py | cat",  # a pipe
        "{exe} main.py > out.json; cat out.json",
        "{exe} main.py $HOME",  # an expansion
        "{exe} main.py *.txt",  # a glob
        "{exe} -u main.py",  # interpreter options
        "{exe} -m mod",
        "{exe}",  # no script
        "FOO=1 {exe} main.py",  # an assignment
        "{exe} 'main.py",  # unbalanced quote
        "/bin/sh main.py",  # another program
        "no-such-interpreter main.py",
    ],
)
def test_anything_else_is_left_to_the_shell(shim: ModuleType, run: str) -> None:
    assert shim.python_command(run.format(exe=shlex.quote(sys.executable))) is None
