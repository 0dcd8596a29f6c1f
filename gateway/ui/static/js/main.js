// The dashboard's shell: sign-in, navigation by the URL's fragment (#/calls/<id>: never the
// token), and one page mounted at a time (each returns a function that stops its timers and
// streams).

import { api, token, whenUnauthorized } from "./api.js";
import * as calls from "./pages/calls.js";
import * as functions from "./pages/functions.js";
import * as jobs from "./pages/jobs.js";
import * as overview from "./pages/overview.js";
import * as tokens from "./pages/tokens.js";

const PAGES = { overview, functions, calls, jobs, tokens };

const view = document.getElementById("view");
const signin = document.getElementById("signin");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
let unmount = () => {};

function showSignIn(message = "") {
  unmount();
  unmount = () => {};
  view.replaceChildren();
  nav.hidden = true;
  signout.hidden = true;
  signin.hidden = false;
  document.getElementById("signin-error").textContent = message;
  document.getElementById("token").focus();
}

function route() {
  if (!token.get()) {
    showSignIn();
    return;
  }
  signin.hidden = true;
  nav.hidden = false;
  signout.hidden = false;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES[name] ? name : "overview";
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.page === page);
  unmount();
  view.replaceChildren();
  unmount = PAGES[page].mount(view, rest.map(decodeURIComponent)) ?? (() => {});
  document.body.dataset.route = location.hash; // which page is mounted (the browser tests wait on it)
}

whenUnauthorized((message) => {
  token.clear();
  showSignIn(`Signed out: ${message}`);
});

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  token.set(field.value.trim());
  field.value = "";
  try {
    await api("/v1/nodes"); // any authenticated route: is the token good?
  } catch (err) {
    if (err.status !== 403) {
      token.clear();
      showSignIn(err.message);
      return;
    }
  }
  route();
});

signout.addEventListener("click", () => {
  token.clear();
  showSignIn();
});

window.addEventListener("hashchange", route);
route();
