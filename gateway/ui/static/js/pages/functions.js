// Functions: every function (latest version: runtime, handler, limits) and the runtimes;
// one function's versions, limits and an invoke form that shows the call's result and its
// output live.

import { api } from "../api.js";
import { errorText, h, json, ms, record, replace, status, table, time } from "../dom.js";
import { watch } from "../live.js";

export function mount(view, [name]) {
  return name ? detail(view, name) : list(view);
}

function limitsText(l) {
  return `${l.timeout_s} s, ${l.memory_mb} MB, ${l.cpus} CPU${l.network ? ", network" : ""}`;
}

function list(view) {
  const functions = h("div", { id: "functions" }, "loading…");
  const runtimes = h("div", { id: "runtimes" }, "loading…");
  view.append(h("h1", {}, "Functions"), functions, h("h2", {}, "Runtimes"), runtimes);
  api("/v1/functions").then(
    (items) =>
      replace(
        functions,
        table(
          [
            { title: "name", cell: (f) => h("a", { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name) },
            { title: "runtime", cell: (f) => f.runtime },
            { title: "version", num: true, cell: (f) => f.version },
            { title: "handler", cell: (f) => f.handler ?? h("span", { class: "muted" }, "command") },
            { title: "limits", cell: (f) => limitsText(f.limits) },
            { title: "deployed", cell: (f) => time(f.created_at) },
          ],
          items,
          { id: "functions-table" },
        ),
      ),
    (err) => replace(functions, errorText(err)),
  );
  api("/v1/runtimes").then(
    (items) =>
      replace(
        runtimes,
        table(
          [
            { title: "name", cell: (r) => r.name },
            { title: "image", cell: (r) => r.image },
            { title: "path", cell: (r) => r.path },
            { title: "dependencies", cell: (r) => r.dependencies },
            { title: "run", cell: (r) => r.run },
          ],
          items,
          { id: "runtimes-table" },
        ),
      ),
    (err) => replace(runtimes, errorText(err)),
  );
}

function detail(view, name) {
  const info = h("div", { class: "card", id: "function" }, "loading…");
  const params = h("textarea", { id: "invoke-params", name: "params" }, "{}");
  const problem = h("p", { class: "error", id: "invoke-error" });
  const outcome = h("div", { id: "invoke-outcome" });
  const button = h("button", { type: "submit", id: "invoke-button" }, "Invoke");
  let current = null;

  const form = h(
    "form",
    { id: "invoke-form", class: "card" },
    h("label", {}, "params (JSON)", params),
    h("p", {}, button),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    let body;
    try {
      body = JSON.parse(params.value || "{}");
    } catch (err) {
      problem.textContent = `params are not JSON: ${err.message}`;
      return;
    }
    current?.stop();
    button.disabled = true;
    try {
      const queued = await api(`/v1/functions/${encodeURIComponent(name)}/invoke`, {
        method: "POST",
        json: body,
        query: { async: "true" },
      });
      current = showCall(outcome, queued.id, () => (button.disabled = false));
    } catch (err) {
      problem.textContent = err.message;
      button.disabled = false;
    }
  });

  view.append(h("h1", {}, `Function ${name}`), info, h("h2", {}, "Invoke"), form, outcome);
  api(`/v1/functions/${encodeURIComponent(name)}`).then(
    (f) =>
      replace(
        info,
        record([
          ["runtime", f.runtime],
          ["version", `${f.version} (kept: ${f.versions.join(", ")})`],
          ["handler", f.handler ?? "none: the runtime's command"],
          ["archive", `${f.archive}, ${f.size} bytes, ${f.digest}`],
          ["dependencies", f.has_dependencies ? "yes" : "none"],
          ["limits", json(f.limits)],
          ["deployed", time(f.created_at)],
        ]),
      ),
    (err) => replace(info, errorText(err)),
  );
  return () => current?.stop();
}

// The invoked call: its status and result when it ends, its output as it comes.
function showCall(el, id, whenEnded) {
  const head = h("div", { id: "invoke-status" }, "queued…");
  const result = h("div", { id: "invoke-result" });
  const problem = h("p", { class: "error" });
  let over = false;
  const live = watch(
    "calls",
    id,
    (c) => {
      replace(
        head,
        record([
          ["call", h("a", { href: `#/calls/${encodeURIComponent(c.id)}` }, `#${c.number} ${c.id}`)],
          ["status", status(c.status)],
          ["served", c.served ?? ""],
          ["duration", ms(c.duration_ms)],
        ]),
      );
      if (["DONE", "ERROR", "TIMEOUT", "CANCELLED"].includes(c.status) && !over) {
        over = true;
        replace(result, h("h3", {}, c.error ? "Error" : "Result"), json(c.error ?? c.result));
        whenEnded();
      }
    },
    (err) => (problem.textContent = err.message),
  );
  replace(el, h("div", { class: "card" }, head, result, problem, h("h3", {}, "Output"), live.logs.el));
  live.logs.el.id = "invoke-logs";
  return live;
}
