// Running a warm-runtime command in the shim's own, already started, Node.js process (see
// faas_bootstrap.js, warm mode).
//
// When the payload's `run` is plainly this node binary running a script with plain arguments
// (`node index.js a b`: no shell syntax, no quotes, no node options), the shim runs the script
// itself as `node` would, instead of starting a new node through sh (a whole interpreter
// start per call, docs/benchmarks.md): process.argv, the working directory, require.main ===
// the script's module (CJS or ESM, through Module.runMain), the params on fd 0
// (process.stdin, fs.readFileSync(0)), stdout on the container's original stdout, the exit
// status (process.exit, exitCode, an uncaught exception or rejection: 1, with Node's own
// message). The container is used for this one call and then destroyed, so nothing of the
// script outlives it. On exit the end marker is written as the shell script would
// (node_agent/endmarker.py).
"use strict";
const fs = require("fs");
const path = require("path");

// Words that are plain for sh -c: no quoting, expansion, redirection or separators.
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

function onPath(name) {
  if (name.includes("/")) return name;
  for (const dir of (process.env.PATH || "").split(":")) {
    const candidate = path.join(dir || ".", name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch (e) { /* next */ }
  }
  return null;
}

// `run` as an argv if it is this node running a script with plain arguments, else null.
function nodeCommand(run) {
  const argv = (run || "").trim().split(/ +/);
  if (argv.length < 2 || !argv.every((w) => PLAIN_WORD.test(w)) || argv[1].startsWith("-")) return null;
  const exe = onPath(argv[0]);
  try {
    if (exe === null || fs.realpathSync(exe) !== fs.realpathSync(process.execPath)) return null;
  } catch (e) {
    return null;
  }
  return argv;
}

function oomKills() {
  for (const f of ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]) {
    try {
      for (const line of fs.readFileSync(f, "utf8").split("\n")) {
        const [k, v] = line.split(" ");
        if (k === "oom_kill") return parseInt(v, 10) || 0;
      }
    } catch (e) { /* not this cgroup version */ }
  }
  return 0;
}

// Point `fd` at `file` (Node has no dup2: close it, and the next open gets the lowest free
// descriptor, which is `fd`, as long as every lower one is open).
function reopen(fd, file, flags) {
  fs.closeSync(fd);
  const got = fs.openSync(file, flags);
  if (got !== fd) throw new Error(`fd ${fd} could not be re-pointed at ${file} (open gave ${got})`);
}

// Run argv[1] in this process as `node argv[1] argv[2..]` would, in directory `dir`.
// `stdoutFd`: the container's original stdout, if the shim moved it off fd 1 (else null).
function runInProcess(argv, dir, nonce, stdoutFd) {
  try {
    process.chdir(dir);
  } catch (e) {
    fs.writeSync(2, `sh: cd: ${dir}: ${e.message}\n`);
    process.exit(125);
  }
  reopen(0, "/faas/params.json", fs.constants.O_RDONLY);
  if (stdoutFd !== null) reopen(1, `/proc/self/fd/${stdoutFd}`, fs.constants.O_WRONLY);
  // the shim's log capture off: the script writes to its stdout and stderr as such
  delete process.stdout.write;
  delete process.stderr.write;
  delete process.stderr.__faasWrite;
  // Node prints an uncaught error only after the "exit" event, so after the end marker (past
  // the end of the call's stderr): print it before, as node would (the stack, from the
  // script's frame), unless the script handles it.
  process.on("uncaughtExceptionMonitor", (err) => {
    if (process.listenerCount("uncaughtException") > 0 || process.hasUncaughtExceptionCaptureCallback()) return;
    const util = require("util");
    fs.writeSync(2, `${err instanceof Error ? util.inspect(err) : "Uncaught " + util.inspect(err)}\n`);
  });
  // The marker goes out after every "exit" listener, the script's own included (they may
  // still write), with the status the process exits with.
  const emit = process.emit;
  process.emit = function (event, ...args) {
    const result = emit.call(this, event, ...args);
    if (event === "exit") {
      const rc = Number(process.exitCode !== undefined ? process.exitCode : args[0]) || 0;
      fs.writeSync(2, `\x1efaas-end:${nonce}\n`);
      fs.writeSync(1, `\x1efaas-end:${nonce}:${rc}:${rc ? oomKills() : 0}\n`);
    }
    return result;
  };
  process.argv = [process.execPath, path.resolve(argv[1]), ...argv.slice(2)];
  // From a fresh stack, as node's own start: a stack trace shows no frame of the shim.
  process.nextTick(require("module").runMain);
}

module.exports = { nodeCommand, runInProcess };
