// The /v1 API from the browser: the token (session storage, this tab only) sent as
// "Authorization: Bearer", JSON in and out, errors as ApiError, and live Server-Sent Events
// read with fetch() (EventSource cannot send the Authorization header).

const KEY = "faas.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function headers(extra = {}) {
  const out = { ...extra };
  const t = token.get();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

async function failure(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // not the JSON error shape: keep the status line
  }
  if (response.status === 401) onUnauthorized(message);
  return new ApiError(response.status, code, message);
}

// api("/v1/calls", {query: {status: "ERROR"}}); api(path, {method: "POST", json: {...}})
export async function api(path, { method = "GET", json, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const init = { method, signal, headers: headers({ Accept: "application/json" }) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

// Follow a live log stream: onEvent(name, data) per event until the server ends it or
// `signal` aborts. Resolves when the stream ends.
export async function follow(path, onEvent, signal) {
  const url = new URL(path, location.origin);
  url.searchParams.set("follow", "true");
  const response = await fetch(url, { signal, headers: headers({ Accept: "text/event-stream" }) });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // keepalive comment
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
