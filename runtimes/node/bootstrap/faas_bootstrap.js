// The handler-protocol shim for Node.js: loads the user's module once (FAAS_HANDLER =
// "module" or "module:export", default "index:handler", from FAAS_PATH, default /app) and
// serves calls as JSON lines on stdin/stdout. See runtimes/python/bootstrap/faas_bootstrap.py
// for the protocol. Whatever the function writes to stdout/stderr or through console is
// captured as the call's logs; the protocol keeps the original stdout writer to itself.
"use strict";
const path = require("path");
const readline = require("readline");

const MAX_LOG = parseInt(process.env.FAAS_MAX_LOG_BYTES || String(1 << 20), 10);
const TRUNCATED = "\n[faas: log truncated]\n";
const protoWrite = process.stdout.write.bind(process.stdout);
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
  process.exit(1);
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
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => { if (line.trim()) { queue.push(JSON.parse(line)); pump(); } });
rl.on("close", () => process.exit(0));
