// A call's or a job's record and output, live while it runs: the log stream (SSE read with
// fetch) and the record, fetched again when the stream ends and every POLL_MS until then
// (a queued call has no output yet; its status still moves).

import { api, follow } from "./api.js";
import { logView } from "./dom.js";

const POLL_MS = 1500;
const ENDED = new Set(["DONE", "ERROR", "TIMEOUT", "CANCELLED", "FINISHED"]);

export const ended = (status) => ENDED.has(status);

// kind: "calls" or "jobs". onRecord(record) after each fetch. Returns {logs, stop}.
export function watch(kind, id, onRecord, onError) {
  const controller = new AbortController();
  const logs = logView();
  let timer;
  let done = false;
  const base = `/v1/${kind}/${encodeURIComponent(id)}`;

  async function poll() {
    try {
      const record = await api(base, { signal: controller.signal });
      onRecord(record);
      if (ended(record.status)) done = true;
    } catch (err) {
      if (!controller.signal.aborted) onError(err);
    }
    if (!done && !controller.signal.aborted) timer = setTimeout(poll, POLL_MS);
  }

  async function stream() {
    try {
      await follow(
        `${base}/logs`,
        (name, data) => {
          if (name === "log") logs.add(data);
          else if (name === "end") done = true;
        },
        controller.signal,
      );
    } catch (err) {
      if (!controller.signal.aborted) onError(err);
    }
    if (!controller.signal.aborted) {
      clearTimeout(timer);
      await poll(); // the final record
    }
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
