// Jobs: submit one (image, command, env, priority, timeout), list them (refreshed every
// POLL_MS), one job's record with its output live and a cancel button.

import { api } from "../api.js";
import { errorText, h, json, ms, record, replace, status, table, time } from "../dom.js";
import { ended, watch } from "../live.js";

const POLL_MS = 3000;
const STATUSES = ["", "QUEUED", "RUNNING", "FINISHED", "ERROR", "TIMEOUT", "CANCELLED"];

export function mount(view, [id]) {
  return id ? detail(view, id) : list(view);
}

function field(label, input) {
  return h("label", {}, label, input);
}

function createForm() {
  const name = h("input", { name: "name", id: "job-name", required: true, value: "job" });
  const image = h("input", { name: "image", id: "job-image", required: true, placeholder: "faas-python" });
  const command = h("input", { name: "command", id: "job-command", size: 40, placeholder: '["python3", "-c", "print(1)"]' });
  const env = h("input", { name: "env", id: "job-env", size: 24, placeholder: '{"KEY": "value"}' });
  const priority = h("input", { name: "priority", id: "job-priority", type: "number", min: 0, max: 9, value: 5 });
  const timeout = h("input", { name: "timeout_s", id: "job-timeout", type: "number", min: 1, placeholder: "node's maximum" });
  const problem = h("p", { class: "error", id: "job-error" });
  const form = h(
    "form",
    { class: "inline card", id: "job-form" },
    field("name", name),
    field("image", image),
    field("command (JSON list)", command),
    field("env (JSON)", env),
    field("priority", priority),
    field("timeout (s)", timeout),
    h("button", { type: "submit", id: "job-submit" }, "Run job"),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    try {
      const spec = {
        name: name.value.trim(),
        priority: Number(priority.value),
        container: {
          image: image.value.trim(),
          command: command.value.trim() ? JSON.parse(command.value) : [],
          env: env.value.trim() ? JSON.parse(env.value) : {},
        },
      };
      if (timeout.value) spec.timeout_s = Number(timeout.value);
      const job = await api("/v1/jobs", { method: "POST", json: spec });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      problem.textContent = err.message;
    }
  });
  return form;
}

function list(view) {
  const st = h("select", { id: "jobs-status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const rows = h("div", { id: "jobs" }, "loading…");
  view.append(h("h1", {}, "Jobs"), h("h2", {}, "Run a job"), createForm(), h("h2", {}, "Jobs"), h("p", {}, h("label", {}, "status ", st)), rows);
  let timer;
  let stopped = false;
  async function loop() {
    try {
      const page = await api("/v1/jobs", { query: { status: st.value, limit: 50 } });
      if (stopped) return;
      replace(
        rows,
        table(
          [
            { title: "#", num: true, cell: (j) => h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.number ?? j.id) },
            { title: "name", cell: (j) => j.name },
            { title: "image", cell: (j) => j.image },
            { title: "status", cell: (j) => status(j.status) },
            { title: "priority", num: true, cell: (j) => j.priority },
            { title: "node", cell: (j) => j.node ?? "" },
            { title: "created", cell: (j) => time(j.created_at) },
            { title: "duration", num: true, cell: (j) => ms(j.result?.duration_ms) },
          ],
          page.items,
          { id: "jobs-table" },
        ),
      );
    } catch (err) {
      if (!stopped) replace(rows, errorText(err));
    }
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  st.addEventListener("change", () => {
    clearTimeout(timer);
    loop();
  });
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function detail(view, id) {
  const info = h("div", { class: "card", id: "job" }, "loading…");
  const problem = h("p", { class: "error", id: "job-detail-error" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-job", hidden: true }, "Cancel job");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const answer = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
      cancel.textContent = `Cancel requested (${answer.status})`;
    } catch (err) {
      problem.textContent = err.message;
      cancel.disabled = false;
    }
  });
  const live = watch(
    "jobs",
    id,
    (j) => {
      cancel.hidden = ended(j.status);
      replace(
        info,
        record([
          ["id", j.id],
          ["name", j.name],
          ["status", status(j.status)],
          ["image", j.image],
          ["command", j.command.join(" ")],
          ["env", Object.keys(j.env).length ? json(j.env) : ""],
          ["secret variables", j.secret_env_names.join(", ")],
          ["priority", j.priority],
          ["node", j.node ?? ""],
          ["created", time(j.created_at)],
          ["started", time(j.result.executed_at)],
          ["finished", time(j.result.finished_at)],
          ["duration", ms(j.result.duration_ms)],
          ["exit code", j.result.exit_code ?? ""],
          ["error", j.result.error ?? ""],
        ]),
      );
    },
    (err) => (problem.textContent = err.message),
  );
  live.logs.el.id = "job-logs";
  view.append(h("h1", {}, `Job ${id}`), h("p", {}, cancel), problem, info, h("h2", {}, "Output"), live.logs.el);
  return () => live.stop();
}
