// Shared by every page: the session (an API token in sessionStorage, nothing else), calls to the
// partner API with that token, problem (RFC 9457) display, downloads, and small DOM helpers.
"use strict";

const RX = (() => {
  const KEY = "rxledger.token";
  const ME = "rxledger.me";

  class Problem extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.title)) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  const token = () => sessionStorage.getItem(KEY);
  const me = () => JSON.parse(sessionStorage.getItem(ME) || "null");

  function signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ME);
    location.assign("/ui/");
  }

  function toSignIn() {
    const next = location.pathname + location.search;
    location.assign("/ui/?next=" + encodeURIComponent(next));
  }

  // One call to the API. `json` or `form` is the body; writes get an Idempotency-Key (a second click
  // replays the first request instead of doing it twice) and wait for their outcome.
  async function api(method, path, { json, form, params, raw, idempotencyKey, useToken } = {}) {
    const headers = { Accept: "application/json, application/problem+json" };
    const bearer = useToken || token();
    if (bearer) headers.Authorization = "Bearer " + bearer;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const query = new URLSearchParams(params || {});
    if (method !== "GET") {
      headers["Idempotency-Key"] = idempotencyKey || crypto.randomUUID();
      query.set("wait", "true");
    }
    const qs = query.toString();
    const response = await fetch(path + (qs ? "?" + qs : ""), { method, headers, body });
    // a challenge means the token itself failed (expired, revoked...); a 401 without one is a wrong
    // e-signature credential, which the page shows where it was typed
    if (response.status === 401 && !useToken && response.headers.get("WWW-Authenticate")) {
      toSignIn();
      throw new Problem(401, { detail: "signed out: sign in again" });
    }
    if (!response.ok) {
      let problem;
      try { problem = await response.json(); } catch { problem = { detail: response.statusText }; }
      throw new Problem(response.status, problem);
    }
    if (raw) return response;
    return response.status === 204 ? null : response.json();
  }

  // "field: detail (rule)", the way an operator can act on it.
  function describe(error) {
    if (!(error instanceof Problem)) return String(error && error.message ? error.message : error);
    const b = error.body;
    const parts = [];
    if (b.field) parts.push(b.field + ":");
    parts.push(b.detail || b.title || "HTTP " + error.status);
    if (Array.isArray(b.errors) && b.errors.length) {
      parts.push("(" + b.errors.map((e) => (e.field ? e.field + ": " : "") + (e.detail || e.title || "")).join("; ") + ")");
    }
    return parts.join(" ");
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function rows(tbody, items, render, empty) {
    tbody.replaceChildren();
    if (!items.length && empty) {
      const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
      tbody.append(el("tr", {}, el("td", { colspan: cols, class: "muted", text: empty })));
      return;
    }
    for (const item of items) tbody.append(render(item));
  }

  let toastTimer;
  function toast(message, kind = "info") {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.dataset.kind = kind;
    box.classList.add("shown");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.remove("shown"), 6000);
  }

  function showError(target, error) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    if (node) node.textContent = error ? describe(error) : "";
    if (error) toast(describe(error), "error");
  }

  const utc = (seconds) =>
    seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) : "";

  const short = (hex, head = 6, tail = 4) =>
    hex && hex.length > head + tail + 1 ? hex.slice(0, head) + "…" + hex.slice(-tail) : hex || "";

  // A file from the API (it needs the token, so no plain link): fetched, then saved by the browser.
  async function download(path, filename, params) {
    const response = await api("GET", path, { raw: true, params });
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const named = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: (named && named[1]) || filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  // Who is signed in, in the header; pages call it first and get the /v1/me answer.
  async function session() {
    if (!token()) {
      toSignIn();
      return new Promise(() => {});
    }
    let who = me();
    if (!who) {
      who = await api("GET", "/v1/me");
      sessionStorage.setItem(ME, JSON.stringify(who));
    }
    const user = document.getElementById("who-user");
    const org = document.getElementById("who-org");
    if (user) user.textContent = `${who.user.printed_name} (${who.user.username}, ${who.user.role})`;
    if (org) {
      org.textContent = who.organization
        ? `${who.organization.name} · GLN ${who.organization.gln} · ${who.org_roles.join(", ").toLowerCase()}`
        : "consortium administration";
    }
    const out = document.getElementById("sign-out");
    if (out) out.addEventListener("click", signOut);
    return who;
  }

  function remember(tokenValue, who) {
    sessionStorage.setItem(KEY, tokenValue);
    sessionStorage.setItem(ME, JSON.stringify(who));
  }

  // The page that fits the organisation's work.
  function homeOf(who) {
    const roles = who.org_roles || [];
    if (roles.includes("REGULATOR")) return "/ui/inspector";
    if (roles.includes("DISPENSER")) return "/ui/counter";
    if ((roles.includes("SPONSOR") || roles.includes("CMO")) && who.user.role === "qp") return "/ui/quality";
    if (roles.some((r) => ["CMO", "LOGISTICS", "DISTRIBUTOR", "SPONSOR"].includes(r))) return "/ui/warehouse";
    return "/ui/inspector";
  }

  return { Problem, api, describe, el, rows, toast, showError, utc, short, download, session, remember, homeOf, me };
})();
