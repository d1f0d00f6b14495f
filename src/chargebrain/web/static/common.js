// Shared by every page: the /cnf client, sign-in (admin by HTTP Basic, a user by id/PIN), the
// navigation bar and a tiny element builder. Text only: strings become text nodes; nothing from
// the configuration is ever parsed as markup.

const AUTH_KEY = "chargebrain-signin";

/** The element `tag` with `props` (properties; `dataset`, `on*` handled) and `children`
 *  (strings become text nodes, null/false are skipped). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// -- sign-in -----------------------------------------------------------------------------------

/** {kind: "admin", auth} | {kind: "user", secret, name} | null (kept for this browser tab). */
export function signin() {
  try { return JSON.parse(sessionStorage.getItem(AUTH_KEY)); } catch { return null; }
}

function setSignin(value) {
  if (value) sessionStorage.setItem(AUTH_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(AUTH_KEY);
}

function basicHeader(password) {
  const bytes = new TextEncoder().encode(`admin:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

/** Does the server take this browser as admin (the stored password, or localhost_is_admin)? */
export async function whoami(auth) {
  const headers = auth ? {Authorization: auth} : {};
  const r = await fetch("/ui/whoami", {headers, cache: "no-store"});
  return r.ok ? r.json() : {admin: false};
}

export async function signInAdmin(password) {
  const auth = basicHeader(password);
  const me = await whoami(auth);
  if (!me.admin) throw new Error("wrong password");
  setSignin({kind: "admin", auth});
}

export async function signInUser(secret) {
  setSignin(null);
  const r = await api("get_user", {rfid: secret});
  if (!r.ok) throw new Error(r.status === 403 ? "unknown user id or PIN" : r.error);
  setSignin({kind: "user", secret, name: r.data.name || "", id: r.data.id});
}

export function signOut() { setSignin(null); }

/** /ui/whoami for the stored sign-in (asked once per page). */
let meCheck = null;
function me() {
  if (meCheck === null) {
    const s = signin();
    meCheck = whoami(s && s.kind === "admin" ? s.auth : null).catch(() => ({admin: false}));
  }
  return meCheck;
}

/** Is the admin signed in? */
export function isAdmin() { return me().then((m) => m.admin); }

// -- the API -----------------------------------------------------------------------------------

/** One /cnf command: {ok, status, data, error}. `body` (an object) makes it a POST of JSON. */
export async function api(cmd, params = {}, body = undefined) {
  const query = new URLSearchParams({cmd});
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const headers = {};
  const s = signin();
  if (s && s.kind === "admin") headers.Authorization = s.auth;
  const init = {headers, cache: "no-store"};
  if (body !== undefined) {
    init.method = "POST";
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let r;
  try {
    r = await fetch("/cnf?" + query.toString(), init);
  } catch (err) {
    return {ok: false, status: 0, data: null, error: `not connected (${err.message})`};
  }
  const type = r.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await r.json() : await r.blob();
  const error = r.ok ? null : (typeof data === "string" ? data : `HTTP ${r.status}`);
  return {ok: r.ok, status: r.status, data, error};
}

/** Offer `blob` as a download named `filename`. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", {href: url, download: filename});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Show the API's message `error` next to the element whose `data-error-for` (space-separated
 *  field names) names the field the message starts with or mentions, else in `fallback`. */
export function showError(form, error, fallback) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  if (fallback) fallback.textContent = "";
  if (!error) return;
  const mentions = (n) => error.startsWith(n + ":") || error.startsWith(n + " ") || error.startsWith(n + "[")
    || error.startsWith(n + ".") || error === `unknown device field ${n}` || error.includes(` ${n} `)
    || error.endsWith(` ${n}`);
  const target = [...form.querySelectorAll("[data-error-for]")]
    .find((el) => el.dataset.errorFor.split(" ").some(mentions)) || fallback;
  if (target) target.textContent = error;
}

// -- the page frame ----------------------------------------------------------------------------

const CHARTS = "/ui/charts";
const PAGES = [["/ui/", "Dashboard"], ["/ui/config", "Configuration"],
               ["/ui/transactions", "Transactions"], ["/ui/en/sim.htm", "Simulation"]];

function signinDialog() {
  const msg = h("p", {class: "error", role: "alert", dataset: {testid: "signin-error"}});
  const pw = h("input", {type: "password", id: "signin-pw", autocomplete: "current-password"});
  const secret = h("input", {type: "password", id: "signin-user", autocomplete: "off"});
  const dialog = h("dialog", {id: "signin", "aria-labelledby": "signin-h"},
    h("h2", {id: "signin-h"}, "Sign in"),
    h("form", {id: "signin-admin", onsubmit: async (ev) => {
      ev.preventDefault();
      try { await signInAdmin(pw.value); location.reload(); } catch (err) { msg.textContent = err.message; }
    }}, h("input", {type: "text", name: "username", autocomplete: "username", value: "admin", hidden: true}),
       h("label", {for: "signin-pw"}, "Admin password"), pw, h("button", {type: "submit"}, "Sign in as admin")),
    h("form", {id: "signin-userform", onsubmit: async (ev) => {
      ev.preventDefault();
      try { await signInUser(secret.value); location.reload(); } catch (err) { msg.textContent = err.message; }
    }}, h("label", {for: "signin-user"}, "User id or PIN"), secret, h("button", {type: "submit"}, "Sign in as user")),
    msg,
    h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"));
  return dialog;
}

/** Fill the page's `<nav id="nav">`: links, and who is signed in. */
export async function frame(active) {
  const nav = $("#nav");
  if (!nav) return;
  for (const [href, label] of PAGES) {
    nav.append(h("a", {href, "aria-current": href === active ? "page" : false}, label));
  }
  // the usage graphs page, where this build has one (web/static/charts.html)
  me().then((m) => {
    if (m.charts) nav.children[0].after(h("a", {href: CHARTS, "aria-current": active === CHARTS ? "page" : false}, "Usage graphs"));
  });
  const who = h("span", {class: "who", dataset: {testid: "who"}});
  const button = h("button", {type: "button", dataset: {testid: "signin-button"}});
  nav.append(who, button);
  const dialog = signinDialog();
  document.body.append(dialog);
  const s = signin();
  const admin = await isAdmin();
  if (admin) who.textContent = s && s.kind === "admin" ? "admin" : "admin (this address)";
  else if (s && s.kind === "user") who.textContent = `user ${s.name || ""}`.trim();
  else who.textContent = "not signed in";
  if (s) {
    button.textContent = "Sign out";
    button.addEventListener("click", () => { signOut(); location.reload(); });
  } else {
    button.textContent = "Sign in";
    button.addEventListener("click", () => dialog.showModal());
  }
}
