// A call's or a job's record and output, live while it runs: the log stream (SSE read with
// fetch) and the record, fetched every POLL_MS until it says the run ended (a queued call
// has no output yet; its status still moves), and at once when the stream ends.

import { api, follow } from "./api.js";
import { logView } from "./dom.js";

const POLL_MS = 1500;
// Just after an async invoke the store may not have the record yet: 404s are not shown
// for this long.
const NEW_GRACE_MS = 10000;
const ENDED = new Set(["DONE", "ERROR", "TIMEOUT", "CANCELLED", "FINISHED"]);

export const ended = (status) => ENDED.has(status);

// kind: "calls" or "jobs". onRecord(record) after each fetch. Returns {logs, stop}.
export function watch(kind, id, onRecord, onError) {
  const controller = new AbortController();
  const logs = logView();
  const base = `/v1/${kind}/${encodeURIComponent(id)}`;
  const since = Date.now();
  let timer;
  let seen = false;
  let over = false;
  let busy = false; // one fetch at a time: the stream's end does not start a second loop

  async function poll() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    try {
      const record = await api(base, { signal: controller.signal });
      seen = true;
      over = ended(record.status);
      onRecord(record);
    } catch (err) {
      const young = err.status === 404 && !seen && Date.now() - since < NEW_GRACE_MS;
      if (!controller.signal.aborted && !young) onError(err);
    } finally {
      busy = false;
    }
    if (!over && !controller.signal.aborted) timer = setTimeout(poll, POLL_MS);
  }

  async function stream() {
    try {
      await follow(`${base}/logs`, (name, data) => name === "log" && logs.add(data), controller.signal);
    } catch (err) {
      if (!controller.signal.aborted) onError(err);
    }
    if (!over && !controller.signal.aborted) poll(); // the run ended: its final record soon
  }

  poll();
  stream();
  return {
    logs,
    stop() {
      controller.abort();
      clearTimeout(timer);
    },
  };
}
