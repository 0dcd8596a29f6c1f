"""Test functions and helpers that register them straight into KV and the object store,
as the gateway does, so that agent tests do not depend on the gateway."""

import hashlib
import io
import tarfile
import zipfile

from nats.js import JetStreamContext

from schemas import FunctionRecord, Layout, Limits, RuntimeSpec, encode

PYTHON_IMAGE = "faas-python"
NODE_IMAGE = "faas-node"

DICE = {
    "test.py": (
        "import json, random, sys\n"
        "params = json.load(sys.stdin)\n"
        "count, sides = params.get('roll', '1d6').split('d')\n"
        "print('rolling', params, file=sys.stderr)\n"
        "print(json.dumps([random.randint(1, int(sides)) for _ in range(int(count))]))\n"
    ),
    "requirements.txt": "# no dependencies\n",
}

ECHO = {"main.py": "import sys\nsys.stdout.write(sys.stdin.read())\n", "requirements.txt": ""}
SLEEPY = {"main.py": "import time\ntime.sleep(3600)\n", "requirements.txt": ""}
CRASH = {"main.py": "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n", "requirements.txt": ""}


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def targz_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def python_runtime(name: str = "python", run: str = "python3 main.py") -> RuntimeSpec:
    return RuntimeSpec(
        name=name, image=PYTHON_IMAGE, path="/app", dependencies="pip install -r requirements.txt", run=run
    )


async def register(
    js: JetStreamContext,
    layout: Layout,
    runtime: RuntimeSpec,
    name: str,
    files: dict[str, str],
    limits: Limits | None = None,
    version: int = 1,
    handler: str | None = None,
    has_dependencies: bool = False,
) -> FunctionRecord:
    await (await js.key_value(layout.runtimes_bucket)).put(runtime.name, encode(runtime))
    archive = zip_bytes(files)
    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    await (await js.object_store(layout.artifacts_bucket)).put(digest, archive)
    record = FunctionRecord(
        name=name,
        runtime=runtime.name,
        version=version,
        digest=digest,
        size=len(archive),
        archive="zip",
        limits=limits or Limits(),
        handler=handler,
        has_dependencies=has_dependencies,
    )
    await (await js.key_value(layout.functions_bucket)).put(name, encode(record))
    return record


HANDLER_RUNTIME_CMD = {"python": "python3 /opt/faas/faas_bootstrap.py", "node": "node /opt/faas/faas_bootstrap.js"}

PY_HANDLER = {
    "main.py": (
        "import os\n"
        "def handler(params):\n"
        "    print('héllo from the handler', params.get('x'))\n"
        "    if params.get('fail'):\n"
        "        raise ValueError('bad input: ' + str(params['fail']))\n"
        "    if params.get('crash'):\n"
        "        os._exit(7)\n"
        "    if params.get('raw'):\n"
        "        os.write(2, b'raw write to fd 2\\n')\n"
        "    if params.get('set'):\n"
        "        return {1, 2}\n"
        "    return {'echo': params, 'pid': os.getpid()}\n"
    ),
    "requirements.txt": "",
}

NODE_HANDLER = {
    "index.js": (
        "exports.handler = async (params) => {\n"
        "  console.log('log from node', params.x);\n"
        "  if (params.fail) throw new RangeError('nope ' + params.fail);\n"
        "  return { echo: params, pid: process.pid };\n"
        "};\n"
    ),
    "package.json": '{"name": "fn", "version": "1.0.0"}',
}


def handler_runtime(kind: str = "python", name: str | None = None) -> RuntimeSpec:
    image = PYTHON_IMAGE if kind == "python" else NODE_IMAGE
    deps = "pip install -r requirements.txt" if kind == "python" else "npm install --omit=dev"
    run = "python3 main.py" if kind == "python" else "node index.js"
    return RuntimeSpec(
        name=name or kind,
        image=image,
        path="/app",
        dependencies=deps,
        run=run,
        handler_command=HANDLER_RUNTIME_CMD[kind],
    )
