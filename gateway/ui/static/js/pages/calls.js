// Calls: filter by function, status and time (the store's records, newest first, refreshed
// every POLL_MS on the first page); one call's record, its output live while it runs, and a
// cancel button (POST /v1/calls/{id}/cancel) while it is queued or running.

import { api } from "../api.js";
import { errorText, h, json, ms, record, replace, status, table, time } from "../dom.js";
import { ended, watch } from "../live.js";

const POLL_MS = 3000;
const STATUSES = ["", "QUEUED", "RUNNING", "DONE", "ERROR", "TIMEOUT", "CANCELLED"];

export function mount(view, [id]) {
  return id ? detail(view, id) : list(view);
}

// A datetime-local field's value (local time) as RFC 3339 in UTC, or undefined.
function isoOf(value) {
  return value ? new Date(value).toISOString() : undefined;
}

const COLUMNS = [
  { title: "#", num: true, cell: (c) => h("a", { href: `#/calls/${encodeURIComponent(c.id)}` }, c.number) },
  { title: "function", cell: (c) => `${c.function ?? ""}${c.version ? ` v${c.version}` : ""}` },
  { title: "status", cell: (c) => status(c.status) },
  { title: "served", cell: (c) => c.served ?? "" },
  { title: "node", cell: (c) => c.node ?? "" },
  { title: "created", cell: (c) => time(c.created_at) },
  { title: "duration", num: true, cell: (c) => ms(c.duration_ms) },
  { title: "error", cell: (c) => (c.error ? `${c.error.type}: ${c.error.message}`.slice(0, 120) : "") },
];

function list(view) {
  const fn = h("input", { name: "function", id: "filter-function", placeholder: "any" });
  const st = h("select", { name: "status", id: "filter-status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const since = h("input", { type: "datetime-local", name: "since", id: "filter-since" });
  const until = h("input", { type: "datetime-local", name: "until", id: "filter-until" });
  const form = h(
    "form",
    { class: "inline", id: "calls-filter" },
    h("label", {}, "function", fn),
    h("label", {}, "status", st),
    h("label", {}, "since", since),
    h("label", {}, "until", until),
    h("button", { type: "submit" }, "Filter"),
  );
  const rows = h("div", { id: "calls" }, "loading…");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older calls");
  view.append(h("h1", {}, "Calls"), form, rows, h("p", {}, more));

  let items = [];
  let cursor = null;
  let paged = false;
  let timer;
  let stopped = false;
  const query = () => ({ function: fn.value.trim(), status: st.value, since: isoOf(since.value), until: isoOf(until.value), limit: 50 });

  async function load(next) {
    try {
      const page = await api("/v1/calls", { query: { ...query(), cursor: next ?? undefined } });
      if (stopped) return;
      items = next ? [...items, ...page.items] : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      replace(rows, table(COLUMNS, items, { id: "calls-table" }));
    } catch (err) {
      if (!stopped) replace(rows, errorText(err));
    }
  }

  async function loop() {
    if (!paged) await load(null);
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    paged = false;
    clearTimeout(timer);
    loop();
  });
  more.addEventListener("click", () => {
    paged = true; // older pages: stop refreshing the first one under the reader
    load(cursor);
  });
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function detail(view, id) {
  const info = h("div", { class: "card", id: "call" }, "loading…");
  const outcome = h("div", { id: "call-outcome" });
  const problem = h("p", { class: "error", id: "call-error" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-call", hidden: true }, "Cancel call");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const answer = await api(`/v1/calls/${encodeURIComponent(id)}/cancel`, { method: "POST" });
      problem.textContent = "";
      cancel.textContent = `Cancel requested (${answer.status})`;
    } catch (err) {
      problem.textContent = err.message;
      cancel.disabled = false;
    }
  });
  const live = watch(
    "calls",
    id,
    (c) => {
      cancel.hidden = ended(c.status);
      replace(
        info,
        record([
          ["id", c.id],
          ["number", c.number],
          ["function", `${c.function ?? ""} v${c.version ?? "?"} (${c.runtime ?? ""})`],
          ["status", status(c.status)],
          ["attempts", c.attempts],
          ["node", c.node ?? ""],
          ["container", c.container ?? ""],
          ["served", c.served ?? ""],
          ["created", time(c.created_at)],
          ["started", time(c.started_at)],
          ["finished", time(c.finished_at)],
          ["duration", ms(c.duration_ms)],
          ["exit code", c.exit_code ?? ""],
          ["params", c.params_omitted ? h("span", { class: "muted" }, "too large to show") : json(c.params)],
        ]),
      );
      if (ended(c.status)) replace(outcome, h("h2", {}, c.error ? "Error" : "Result"), json(c.error ?? c.result));
    },
    (err) => (problem.textContent = err.message),
  );
  live.logs.el.id = "call-logs";
  view.append(h("h1", {}, `Call ${id}`), h("p", {}, cancel), problem, info, outcome, h("h2", {}, "Output"), live.logs.el);
  return () => live.stop();
}
