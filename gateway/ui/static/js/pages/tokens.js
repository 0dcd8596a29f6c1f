// Tokens (admins): the tokens' names, roles and expiry (never the tokens), a form that
// creates one and shows it once, and revoke buttons.

import { api } from "../api.js";
import { errorText, h, replace, table, time } from "../dom.js";

const ROLES = ["read", "invoke", "deploy", "admin"];

export function mount(view) {
  const rows = h("div", { id: "tokens" }, "loading…");
  const issued = h("div", { id: "token-issued" });
  const name = h("input", { name: "name", id: "token-name", placeholder: "optional" });
  const role = h("select", { name: "role", id: "token-role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const expires = h("input", { name: "expires_in_s", id: "token-expires", type: "number", min: 1, placeholder: "never" });
  const problem = h("p", { class: "error" });
  const form = h(
    "form",
    { class: "inline card", id: "token-form" },
    h("label", {}, "name", name),
    h("label", {}, "role", role),
    h("label", {}, "expires in (s)", expires),
    h("button", { type: "submit" }, "Create token"),
    problem,
  );

  async function load() {
    try {
      const tokens = await api("/v1/tokens");
      replace(
        rows,
        table(
          [
            { title: "name", cell: (t) => t.name },
            { title: "role", cell: (t) => t.role },
            { title: "created", cell: (t) => time(t.created_at) },
            { title: "expires", cell: (t) => (t.expires_at ? time(t.expires_at) : "never") },
            { title: "", cell: (t) => (t.expired ? h("span", { class: "stale" }, "expired") : "") },
            { title: "", cell: (t) => h("button", { type: "button", class: "secondary", onclick: () => revoke(t.name) }, "Revoke") },
          ],
          tokens,
          { id: "tokens-table" },
        ),
      );
    } catch (err) {
      replace(rows, err.status === 403 ? h("p", { class: "muted" }, `Admins only: ${err.message}`) : errorText(err));
    }
  }

  async function revoke(tokenName) {
    if (!confirm(`Revoke token ${tokenName}? Clients using it get 401 from now on.`)) return;
    try {
      await api(`/v1/tokens/${encodeURIComponent(tokenName)}`, { method: "DELETE" });
    } catch (err) {
      problem.textContent = err.message;
    }
    load();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const body = { role: role.value };
    if (name.value.trim()) body.name = name.value.trim();
    if (expires.value) body.expires_in_s = Number(expires.value);
    try {
      const t = await api("/v1/tokens", { method: "POST", json: body });
      replace(issued, h("div", { class: "card" }, h("p", {}, `Token ${t.name} (${t.role}): shown this once.`), h("div", { class: "token-once" }, t.token)));
      load();
    } catch (err) {
      problem.textContent = err.message;
    }
  });

  view.append(h("h1", {}, "Tokens"), form, issued, rows);
  load();
}
