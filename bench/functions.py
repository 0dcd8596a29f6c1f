"""The functions and runtimes the benchmark and the experiments call.

Two runtimes (Python, Node.js) that serve both protocols: ``run`` for the command protocol,
``handler_command`` for the handler protocol. Each function is a small echo, with or
without one dependency (``six`` from PyPI, ``left-pad`` from npm).
"""

import io
import zipfile
from dataclasses import dataclass

PYTHON_RUNTIME = {
    "name": "py",
    "image": "faas-python",
    "path": "/app",
    "dependencies": "pip install -r requirements.txt",
    "run": "python3 main.py",
    "handler_command": "python3 /opt/faas/faas_bootstrap.py",
}
NODE_RUNTIME = {
    "name": "node",
    "image": "faas-node",
    "path": "/app",
    "dependencies": "npm install --omit=dev",
    "run": "node index.js",
    "handler_command": "node /opt/faas/faas_bootstrap.js",
}
RUNTIMES = {"py": PYTHON_RUNTIME, "node": NODE_RUNTIME}


@dataclass(frozen=True)
class FunctionDef:
    name: str
    runtime: str  # a key of RUNTIMES
    files: dict[str, str]
    handler: str | None = None  # None: the command protocol
    has_dependencies: bool = False
    calls: str = ""  # the functions it may call (faas.call), comma-separated

    @property
    def language(self) -> str:
        return "python" if self.runtime == "py" else "node"

    @property
    def protocol(self) -> str:
        return "handler" if self.handler else "command"

    def archive(self) -> bytes:
        """The same bytes every time (fixed timestamps): the same digest, so the agent's
        dependency image of an earlier run is found again instead of built anew."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in sorted(self.files.items()):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, text)
        return buf.getvalue()


_PY_CMD = "import json, sys\nparams = json.load(sys.stdin)\nprint(json.dumps({'echo': params}))\n"
_PY_HANDLER = "def handler(params):\n    return {'echo': params}\n"
_PY_SIX = "import six\n\n\ndef handler(params):\n    return {'echo': params, 'dep': six.text_type.__name__}\n"
_NODE_CMD = (
    "let s = '';\nprocess.stdin.on('data', (d) => (s += d));\n"
    "process.stdin.on('end', () => console.log(JSON.stringify({ echo: JSON.parse(s || '{}') })));\n"
)
_NODE_HANDLER = "exports.handler = async (params) => ({ echo: params });\n"
_NODE_PAD = (
    "const leftPad = require('left-pad');\n"
    "exports.handler = async (params) => ({ echo: params, dep: leftPad('1', 3, '0') });\n"
)
_NODE_PKG = '{"name": "%s", "version": "1.0.0"%s}\n'

FUNCTIONS: dict[str, FunctionDef] = {
    f.name: f
    for f in (
        FunctionDef("py-cmd", "py", {"main.py": _PY_CMD, "requirements.txt": ""}),
        FunctionDef("py", "py", {"main.py": _PY_HANDLER, "requirements.txt": ""}, handler="main:handler"),
        FunctionDef(
            "py-deps",
            "py",
            {"main.py": _PY_SIX, "requirements.txt": "six\n"},
            handler="main:handler",
            has_dependencies=True,
        ),
        FunctionDef("node-cmd", "node", {"index.js": _NODE_CMD, "package.json": _NODE_PKG % ("node-cmd", "")}),
        FunctionDef(
            "node", "node", {"index.js": _NODE_HANDLER, "package.json": _NODE_PKG % ("node", "")}, handler="index"
        ),
        FunctionDef(
            "node-deps",
            "node",
            {
                "index.js": _NODE_PAD,
                "package.json": _NODE_PKG % ("node-deps", ', "dependencies": {"left-pad": "1.3.0"}'),
            },
            handler="index",
            has_dependencies=True,
        ),
    )
}
