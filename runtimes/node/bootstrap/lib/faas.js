// Calling other functions from a Node.js handler: `const faas = require("faas")`.
//
//   const result = await faas.call("resize", { url });   // rejects with faas.CallError on failure
//   const all = await Promise.all(xs.map((x) => faas.call("leaf", x)));   // fan out
//   const id = await faas.spawn("notify", { to: "ops" });  // fire and forget: the child's call id
//
// The request travels over the shim's protocol channel to the agent, which publishes an
// ordinary invocation (recorded with this call as its parent), made with this function's
// identity: the callee must be in the function's `calls` allow-list. A failed child rejects
// with a CallError whose `name` and `type` are the child's error type (so that a failure
// passed on up a tree keeps its type), with its message and `callId`. The shim resolves
// require("faas") here (NODE_PATH=/opt/faas/lib).
"use strict";

class CallError extends Error {
  constructor(type, message, callId) {
    super(message);
    this.name = type;
    this.type = type;
    this.callId = callId;
  }
}

let send = null;
let nextRef = 1;
const pending = new Map();

function request(fn, params, wait) {
  if (send === null) {
    return Promise.reject(new Error("faas.call works inside a function called through the handler protocol"));
  }
  if (typeof fn !== "string") return Promise.reject(new TypeError("the function to call is named by a string"));
  return new Promise((resolve, reject) => {
    const ref = nextRef++;
    pending.set(ref, { resolve, reject });
    send({ kind: "call", ref, function: fn, params: params === undefined ? null : params, wait });
  });
}

// The shim's hooks: where nested calls go out, and the agent's answers coming in.
function bind(sendLine) { send = sendLine; }
function deliver(answer) {
  const waiter = pending.get(answer.ref);
  if (waiter === undefined) return; // an answer for a call that ended is dropped
  pending.delete(answer.ref);
  if (answer.ok) { waiter.resolve(answer); return; }
  const error = answer.error || {};
  waiter.reject(new CallError(error.type || "CallError", error.message || "", answer.id));
}

module.exports = {
  CallError,
  call: async (fn, params) => (await request(fn, params, true)).result,
  spawn: async (fn, params) => (await request(fn, params, false)).id,
  _bind: bind,
  _deliver: deliver,
};
