// The handler-protocol shim for Node.js: loads the user's module once (FAAS_HANDLER =
// "module" or "module:export", default "index:handler", from FAAS_PATH, default /app) and
// serves calls as JSON lines on stdin/stdout. See runtimes/python/bootstrap/faas_bootstrap.py
// for the protocol. Whatever the function writes to stdout/stderr or through console is
// captured as the call's logs; the protocol keeps the original stdout writer to itself.
//
// Output written to fd 1 behind the shim's back (fs.writeSync(1), child processes with
// inherited stdio) is logged too: fd 1 goes to stderr (see privateStdout).
//
// Warm mode (FAAS_WARM=1, warm-runtime pools): as the Python shim, it starts before any
// function is known, says {"kind":"waiting"}, reads one payload (a JSON line {"size", "path",
// "handler", "max_log_bytes", "script", "nonce"} and a tar of "size" bytes, unpacked at / by
// tar) and then loads the handler in-process, or, for the command protocol, runs the command
// in this process when it is plainly `node <script> [words]` (faas_command.js), else
// `sh -c <script>` with the nonce on its fd 3, and exits with its status (Node cannot exec).
//
// Nested calls (lib/faas.js: `require("faas")`, `await faas.call(name, params)`): the handler's
// call lines go out on the protocol channel, the agent's {"kind":"call_result"} lines are
// handed to the calls waiting for them; calls are served one at a time meanwhile.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const childProcess = require("child_process");
const command = require("./faas_command.js");

let MAX_LOG = parseInt(process.env.FAAS_MAX_LOG_BYTES || String(1 << 20), 10);
const TRUNCATED = "\n[faas: log truncated]\n";

// On attached stdio the protocol gets a descriptor of its own on the original stdout, and fd
// 1 is pointed at stderr, so that what the function or its child processes write to fd 1
// becomes log output and can never corrupt the protocol (the Python shim does this with
// dup2). Node has no dup2: opening /proc/self/fd/N opens the same pipe anew, and after
// close(1) the next open() gets the lowest free descriptor, 1. Returns null (fd 1 left as it
// is) where that cannot work: stdout is a socket or a terminal. Runs before anything touches
// process.stdout.
function privateStdout() {
  let proto;
  try {
    if (!fs.fstatSync(1).isFIFO()) return null;
    proto = fs.openSync("/proc/self/fd/1", fs.constants.O_WRONLY);
  } catch (e) {
    return null;
  }
  fs.closeSync(1);
  let moved;
  try {
    moved = fs.openSync("/proc/self/fd/2", fs.constants.O_WRONLY);
  } catch (e) {
    moved = fs.openSync(`/proc/self/fd/${proto}`, fs.constants.O_WRONLY); // fd 1 back on stdout
  }
  if (moved !== 1) throw new Error(`fd 1 could not be re-pointed (open gave ${moved})`);
  return proto;
}
const PROTO_FD = process.env.FAAS_SOCKET ? null : privateStdout();

function writeAll(fd, text) {
  const buf = Buffer.from(text, "utf8");
  for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off);
  return true;
}

// The protocol channel: the original stdout and stdin, or with FAAS_SOCKET=<path> the one
// connection accepted on a Unix socket listening there (the agent connects from the host).
let protoWrite = PROTO_FD === null ? process.stdout.write.bind(process.stdout) : (text) => writeAll(PROTO_FD, text);
// null: process.stdin, created only when needed (warm mode reads its payload from fd 0 first)
let protoInput = null;
let protoEnd = (done) => done();
const send = (obj) => protoWrite(JSON.stringify(obj) + "\n");

// During a call, what the function writes goes to the agent at once as {"kind":"log"} lines
// on the protocol channel, within the call's log budget.
let logs = null;
function capturer(stream) {
  return function (chunk) {
    if (logs === null) { process.stderr.__faasWrite(chunk); return true; }
    if (logs.truncated) return true;
    const s = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    const text = s.slice(0, MAX_LOG - logs.size);
    logs.size += text.length;
    if (text) send({ kind: "log", stream, text });
    if (text.length < s.length) {
      logs.truncated = true;
      send({ kind: "log", stream: "stderr", text: TRUNCATED });
    }
    return true;
  };
}
process.stderr.__faasWrite = process.stderr.write.bind(process.stderr);
process.stdout.write = capturer("stdout");
process.stderr.write = capturer("stderr");

function errorInfo(e) {
  if (e instanceof Error) return { type: e.name || "Error", message: e.message, traceback: e.stack || "" };
  return { type: "Error", message: String(e), traceback: "" };
}

function start() {
  // require("faas") from the function's code finds lib/faas.js
  process.env.NODE_PATH = [path.join(__dirname, "lib"), process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
  require("module").Module._initPaths();
  const faas = require("faas");
  faas._bind(send);
  let handler;
  try {
    const spec = process.env.FAAS_HANDLER || "index:handler";
    const [mod, exp] = spec.split(":");
    const root = process.env.FAAS_PATH || "/app";
    process.chdir(root);
    const loaded = require(path.resolve(root, mod));
    handler = exp ? loaded[exp] : (typeof loaded === "function" ? loaded : loaded.handler);
    if (typeof handler !== "function") throw new TypeError(`${spec} does not export a function`);
  } catch (e) {
    send({ kind: "init_error", error: errorInfo(e) });
    protoEnd(() => process.exit(1)); // a socket write is asynchronous: let it out first
    return;
  }
  send({ kind: "ready" });

  // Calls are served one at a time, in order: a warm container holds one call at a time.
  const queue = [];
  let busy = false;
  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length) {
      const req = queue.shift();
      logs = { size: 0, truncated: false };
      let reply;
      try {
        const result = await handler(req.params);
        let payload;
        try { payload = JSON.stringify(result === undefined ? null : result); }
        catch (e) { throw new TypeError("the result is not JSON-serializable: " + e.message); }
        reply = `{"id":${JSON.stringify(req.id)},"ok":true,"result":${payload},"logs":""}`;
      } catch (e) {
        reply = JSON.stringify({ id: req.id, ok: false, error: errorInfo(e), logs: "" });
      }
      logs = null;
      protoWrite(reply + "\n");
    }
    busy = false;
  }
  const rl = readline.createInterface({ input: protoInput || process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    const message = JSON.parse(line);
    if (message.kind === "call_result") faas._deliver(message);
    else { queue.push(message); pump(); }
  });
  rl.on("close", () => process.exit(0));
}

// The payload, read from fd 0 without process.stdin (which would take fd 0 for good): a
// command run in this process gets the params on fd 0 instead. Returns [load, what followed].
function readPayload() {
  const chunk = Buffer.alloc(1 << 16);
  let buf = Buffer.alloc(0);
  let load = null;
  for (;;) {
    let n;
    try {
      n = fs.readSync(0, chunk, 0, chunk.length, null);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // non-blocking fd 0
      continue;
    }
    if (n === 0) process.exit(0); // the agent went away before sending a payload
    buf = Buffer.concat([buf, chunk.subarray(0, n)]);
    if (load === null) {
      const nl = buf.indexOf(10);
      if (nl < 0) continue;
      load = JSON.parse(buf.subarray(0, nl).toString("utf8"));
      buf = buf.subarray(nl + 1);
    }
    if (buf.length >= load.size) return [load, buf];
  }
}

// FAAS_WARM_SOCKET: listen before saying "waiting" (bind and listen are synchronous), so the
// agent connects while the cell is idle; a handler's calls then go over that connection.
function listenWarm() {
  const socketPath = process.env.FAAS_WARM_SOCKET;
  delete process.env.FAAS_WARM_SOCKET;
  if (!socketPath) return null;
  const net = require("net");
  try { fs.unlinkSync(socketPath); } catch (e) { /* not there */ }
  const server = net.createServer();
  server.listen(socketPath);
  fs.chmodSync(socketPath, 0o777); // the agent may run as another user than this container
  return { server, socketPath };
}

function warm() {
  delete process.env.FAAS_WARM;
  const listening = listenWarm();
  send({ kind: "waiting" });
  const [load, buf] = readPayload();
  const rest = buf.subarray(load.size);
  const untar = childProcess.spawnSync("tar", ["-x", "-C", "/"], { input: buf.subarray(0, load.size) });
  if (untar.status !== 0) {
    process.stderr.__faasWrite(String(untar.stderr || untar.error));
    process.exit(125);
  }
  if (load.handler) {
    MAX_LOG = load.max_log_bytes;
    Object.assign(process.env, {
      FAAS_HANDLER: load.handler, FAAS_PATH: load.path, FAAS_MAX_LOG_BYTES: String(MAX_LOG),
    });
    if (listening) {
      listening.server.once("connection", (conn) => {
        listening.server.close();
        protoWrite = conn.write.bind(conn);
        protoInput = conn;
        protoEnd = (done) => conn.end(done);
        start();
      });
      return;
    }
    if (rest.length) process.stdin.unshift(rest);
    start();
    return;
  }
  if (listening) { // a command: the agent's connection ends unaccepted
    listening.server.close();
    try { fs.unlinkSync(listening.socketPath); } catch (e) { /* gone */ }
  }
  const argv = command.nodeCommand(load.run);
  if (argv !== null) {
    command.runInProcess(argv, load.path, load.nonce, PROTO_FD);
    return;
  }
  // the command's stdout is the result: the original stdout, not the re-pointed fd 1
  const child = childProcess.spawn("/bin/sh", ["-c", load.script], {
    stdio: ["ignore", PROTO_FD === null ? "inherit" : PROTO_FD, "inherit", "pipe"],
  });
  child.stdio[3].end(load.nonce + "\n");
  child.on("exit", (code, signal) => {
    const signals = require("os").constants.signals;
    process.exit(code !== null ? code : 128 + (signals[signal] || 0));
  });
}

function serveSocket(socketPath) {
  const net = require("net");
  const fs = require("fs");
  delete process.env.FAAS_SOCKET;
  try { fs.unlinkSync(socketPath); } catch (e) { /* not there */ }
  const server = net.createServer((conn) => {
    server.close();
    protoWrite = conn.write.bind(conn);
    protoInput = conn;
    protoEnd = (done) => conn.end(done);
    start();
  });
  // the agent may run as another user than this container
  server.listen(socketPath, () => fs.chmodSync(socketPath, 0o777));
}

if (process.env.FAAS_WARM === "1") warm();
else if (process.env.FAAS_SOCKET) serveSocket(process.env.FAAS_SOCKET);
else start();
