// Overview: the nodes (slots, free slots, warm containers, stem cells), calls per second and
// latency percentiles over the last minutes (GET /v1/stats), queue depth per runtime, and the
// latest failed calls. Polled every POLL_MS without reloading the page.

import { api } from "../api.js";
import { timeChart } from "../charts.js";
import { chips, h, ms, replace, status, table, time } from "../dom.js";

const POLL_MS = 2000;
const WINDOW_S = 300;
const STEP_S = 10;

export function mount(view) {
  const figures = h("div", { class: "figures card", id: "figures" });
  const nodes = h("div", { id: "nodes" });
  const rateBox = h("div", { class: "card", id: "chart-rate" });
  const latencyBox = h("div", { class: "card", id: "chart-latency" });
  const queues = h("div", { id: "queues" });
  const errors = h("div", { id: "recent-errors" });
  const problem = h("p", { class: "error", id: "overview-error" });
  view.append(
    h("h1", {}, "Overview"),
    problem,
    figures,
    h("h2", {}, "Nodes"),
    nodes,
    h("h2", {}, `Calls over the last ${WINDOW_S / 60} minutes`),
    h("div", { class: "grid" }, rateBox, latencyBox),
    h("h2", {}, "Queues"),
    queues,
    h("h2", {}, "Recent errors"),
    errors,
  );
  const rate = timeChart(rateBox, "calls per second", ["calls/s", "errors/s"], "/s");
  const latency = timeChart(latencyBox, "latency (created → finished)", ["p50", "p95", "p99"], "ms");

  let timer;
  let stopped = false;
  const controller = new AbortController();

  async function refresh() {
    const signal = controller.signal;
    const [nodeList, stats] = await Promise.allSettled([
      api("/v1/nodes", { signal }),
      api("/v1/stats", { signal, query: { window_s: WINDOW_S, step_s: STEP_S } }),
    ]);
    if (stopped) return;
    const failed = [nodeList, stats].filter((r) => r.status === "rejected").map((r) => r.reason.message);
    problem.textContent = failed.join("; ");
    if (nodeList.status === "fulfilled") renderNodes(nodes, nodeList.value);
    if (stats.status === "fulfilled") {
      const s = stats.value;
      renderFigures(figures, s, nodeList.status === "fulfilled" ? nodeList.value : []);
      const xs = s.buckets.map((b) => Date.parse(b.at) / 1000 + s.step_s);
      rate.update(xs, [s.buckets.map((b) => b.calls / s.step_s), s.buckets.map((b) => b.errors / s.step_s)]);
      latency.update(xs, ["p50_ms", "p95_ms", "p99_ms"].map((k) => s.buckets.map((b) => b[k])));
      renderQueues(queues, s.queues);
      renderErrors(errors, s.recent_errors);
    }
  }

  async function loop() {
    try {
      await refresh();
    } catch (err) {
      if (!stopped) problem.textContent = err.message;
    }
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  loop();

  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
    rate.destroy();
    latency.destroy();
  };
}

function renderFigures(el, s, nodes) {
  const slots = nodes.filter((n) => n.fresh).reduce((a, n) => [a[0] + n.slots, a[1] + n.free], [0, 0]);
  const waiting = s.queues.reduce((a, q) => a + q.messages, 0);
  const figure = (id, value, label) => h("div", { class: "figure", id }, h("b", {}, value), h("span", {}, label));
  replace(
    el,
    figure("fig-nodes", `${nodes.filter((n) => n.fresh).length}`, "live nodes"),
    figure("fig-slots", `${slots[1]} / ${slots[0]}`, "free slots"),
    figure("fig-rate", s.calls_per_s.toFixed(2), "calls/s (5 min)"),
    figure("fig-p50", ms(s.p50_ms), "p50 latency"),
    figure("fig-p99", ms(s.p99_ms), "p99 latency"),
    figure("fig-failed", `${(s.by_status.ERROR ?? 0) + (s.by_status.TIMEOUT ?? 0)}`, "failed (5 min)"),
    figure("fig-queued", `${waiting}`, "in the queues"),
  );
}

function renderNodes(el, nodes) {
  replace(
    el,
    table(
      [
        { title: "node", cell: (n) => n.node_id },
        { title: "state", cell: (n) => h("span", { class: n.fresh ? "fresh" : "stale" }, n.fresh ? "live" : `silent ${n.age_s.toFixed(0)} s`) },
        { title: "policy", cell: (n) => n.policy },
        { title: "slots", num: true, cell: (n) => n.slots },
        { title: "free", num: true, cell: (n) => n.free },
        { title: "runtimes", cell: (n) => n.runtimes.join(", ") },
        { title: "stem cells (idle, per runtime)", cell: (n) => chips(n.warm_runtimes) },
        { title: "warm containers (idle, per function)", cell: (n) => chips(n.warm_functions) },
        { title: "heartbeat", cell: (n) => time(n.at) },
      ],
      nodes,
      { id: "nodes-table" },
    ),
  );
}

function renderQueues(el, queues) {
  replace(
    el,
    table(
      [
        { title: "kind", cell: (q) => q.kind },
        { title: "name", cell: (q) => q.name },
        { title: "waiting or running", num: true, cell: (q) => q.messages },
      ],
      queues,
      { id: "queues-table" },
    ),
  );
}

function renderErrors(el, calls) {
  replace(
    el,
    table(
      [
        { title: "call", cell: (c) => h("a", { href: `#/calls/${encodeURIComponent(c.id)}` }, `#${c.number}`) },
        { title: "function", cell: (c) => c.function ?? "" },
        { title: "status", cell: (c) => status(c.status) },
        { title: "error", cell: (c) => (c.error ? `${c.error.type}: ${c.error.message}`.slice(0, 200) : "") },
        { title: "finished", cell: (c) => time(c.finished_at) },
      ],
      calls,
      { id: "errors-table" },
    ),
  );
}
