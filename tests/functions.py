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
    )
    await (await js.key_value(layout.functions_bucket)).put(name, encode(record))
    return record
