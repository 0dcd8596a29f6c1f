// A few helpers to build the pages without a framework (and without innerHTML of data).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function time(value) {
  if (!value) return "";
  const d = new Date(value);
  return d.toLocaleString(undefined, { hour12: false });
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`;
}

export function status(value) {
  return h("span", { class: `status status-${value}` }, value);
}

export function chips(obj) {
  const entries = Object.entries(obj ?? {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "chips" }, entries.map(([k, v]) => h("span", {}, `${k} × ${v}`)));
}

export function table(columns, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.title)))),
    h(
      "tbody",
      {},
      rows.length
        ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "none")),
    ),
  );
}

export function record(pairs) {
  return h("dl", { class: "record" }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "")]));
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function errorText(err) {
  return h("p", { class: "error" }, err.message ?? String(err));
}

// A log view fed line by line ({at, stream, text}).
export function logView() {
  const pre = h("pre", { class: "logs" });
  return {
    el: pre,
    add(line) {
      const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(h("span", { class: line.stream }, line.text.endsWith("\n") ? line.text : `${line.text}\n`));
      if (stick) pre.scrollTop = pre.scrollHeight;
    },
    clear() {
      pre.replaceChildren();
    },
  };
}
