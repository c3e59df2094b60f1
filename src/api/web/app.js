// crew web view: runs list, a run's hosts with verdicts and live output, a heist's steps ×
// hosts grid. Host data is untrusted: it only ever reaches the page as textContent (never
// innerHTML), and the page's Content-Security-Policy allows no inline script.
"use strict";

const TOKEN_KEY = "crew-token";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

// `#token=…&run=…`: keep the token in this tab's sessionStorage, and take it out of the URL.
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, h.get("token"));
    h.delete("token");
    history.replaceState(null, "", location.pathname + (h.toString() ? "#" + h.toString() : ""));
  }
  return h.get("run");
}

class Unauthorized extends Error {}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({}, opts, {
    headers: Object.assign({ "Authorization": "Bearer " + token() }, (opts || {}).headers || {}),
  }));
  if (r.status === 401) throw new Unauthorized("unauthorized");
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showLogin(message) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
}

function fail(e) {
  if (e instanceof Unauthorized) { sessionStorage.removeItem(TOKEN_KEY); showLogin("That token was refused."); }
  else console.error(e);
}

// ---- runs list
async function refreshRuns() {
  const data = await api("/api/v1/runs");
  const body = $("runs-body");
  body.replaceChildren();
  for (const r of data.runs) {
    const counts = Object.entries(r.verdicts).map(([v, n]) => `${n} ${v}`).join(", ");
    const tr = el("tr", { class: "link", "data-run": r.id },
      el("td", {}, r.id), el("td", {}, r.kind), el("td", {}, r.what), el("td", {}, r.who),
      el("td", { class: "state " + r.state }, r.state),
      el("td", {}, `${r.hosts}${counts ? " (" + counts + ")" : ""}`));
    tr.addEventListener("click", () => { location.hash = "run=" + encodeURIComponent(r.id); });
    body.append(tr);
  }
}

// ---- one run
let current = null;

function hostPane(name) {
  let pane = document.querySelector(`.host[data-host="${CSS.escape(name)}"]`);
  if (!pane) {
    pane = el("div", { class: "host", "data-host": name },
      el("h3", {}, el("span", { class: "name" }, name), el("span", { class: "verdict" })),
      el("pre", { class: "out" }));
    $("hosts").append(pane);
  }
  return pane;
}

function setVerdict(name, verdict) {
  const v = hostPane(name).querySelector(".verdict");
  v.textContent = verdict || "";
  v.className = "verdict " + (verdict || "").replace(/ /g, "_");
}

function appendOutput(name, stream, text) {
  const pre = hostPane(name).querySelector("pre.out");
  const span = el("span", { class: stream }, text);
  pre.append(span);
  while (pre.childNodes.length > 2000) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

function bytesText(data) {
  if (typeof data === "string") return data;
  return new TextDecoder().decode(new Uint8Array(data || []));
}

function drawGrid(view) {
  const grid = $("grid");
  if (!view || !view.steps) { grid.hidden = true; return; }
  grid.hidden = false;
  grid.replaceChildren();
  grid.append(el("thead", {}, el("tr", {}, el("th", {}, "step"), ...view.hosts.map((h) => el("th", {}, h)))));
  const tb = el("tbody");
  const rows = (names, cells, prefix) => names.forEach((step, i) => {
    tb.append(el("tr", {}, el("td", {}, prefix + step),
      ...(cells[i] || []).map((c) => el("td", { class: "cell " + c.state, title: c.reason || c.what || "" },
        c.state.replace("_", " ") + (c.attempts > 1 ? ` ×${c.attempts}` : "")))));
  });
  rows(view.steps, view.cells, "");
  rows(view.rollback_steps || [], view.rollback_cells || [], "↩ ");
  grid.append(tb);
}

function drawAsks(run) {
  const box = $("asks");
  box.replaceChildren();
  for (const a of run.asks || []) {
    const p = el("p", { class: "asking" }, `ask ${a.ask_id}: ${a.host} waits for a decision`);
    for (const d of ["advance", "retry", "rollback", "abort"]) {
      const b = el("button", { type: "button" }, d);
      b.addEventListener("click", () => api(`/api/v1/runs/${encodeURIComponent(run.id)}/asks/${a.ask_id}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ decision: d }),
      }).then(() => loadRun(run.id)).catch(fail));
      p.append(b);
    }
    box.append(p);
  }
}

async function loadRun(id) {
  const run = await api("/api/v1/runs/" + encodeURIComponent(id));
  if (!current || current.id !== id) return run;
  $("run-title").textContent = `${run.kind} ${run.id}: ${run.what}`;
  $("run-state").textContent = run.state;
  $("run-state").className = "state " + run.state;
  $("run-who").textContent = run.who ? "started by " + run.who : "";
  for (const h of run.host_list || []) setVerdict(h.name, h.verdict || h.outcome || "");
  drawGrid(run.view);
  drawAsks(run);
  return run;
}

// SSE over fetch (so the token goes in a header), resumed with Last-Event-ID after a drop.
async function follow(id, state) {
  let lastId = null;
  for (let attempt = 0; attempt < 1000 && current === state; attempt++) {
    try {
      const headers = { "Authorization": "Bearer " + token() };
      if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
      const r = await fetch(`/api/v1/runs/${encodeURIComponent(id)}/events`, { headers, signal: state.abort.signal });
      if (r.status === 401) throw new Unauthorized();
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { event: "message", data: [] };
          for (const line of block.split("\n")) {
            const c = line.indexOf(":");
            if (c === 0) continue;
            const k = c < 0 ? line : line.slice(0, c);
            const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (k === "id") ev.id = v; else if (k === "event") ev.event = v; else if (k === "data") ev.data.push(v);
          }
          if (ev.id !== undefined) lastId = Number(ev.id);
          if (ev.event === "end") { await loadRun(id); return; }
          if (ev.data.length) onEvent(id, ev.event, JSON.parse(ev.data.join("\n")));
        }
      }
    } catch (e) {
      if (e instanceof Unauthorized) return fail(e);
      if (e.name === "AbortError") return;
      console.warn("event stream:", e.message);
    }
    await new Promise((res) => setTimeout(res, Math.min(500 * (attempt + 1), 5000)));
  }
}

let redraw = null;
function soon(id) {
  if (redraw) return;
  redraw = setTimeout(() => { redraw = null; loadRun(id).catch(fail); }, 300);
}

function onEvent(id, kind, e) {
  if (kind === "error") { $("run-who").textContent = e.message || "error"; return; }
  switch (e.event) {
    case "run_started": e.hosts.forEach((h) => hostPane(h)); break;
    case "stdout": case "stderr": appendOutput(e.host, e.event, e.data); break;
    case "exit": case "error": setVerdict(e.host, e.verdict); if (e.message) appendOutput(e.host, "stderr", e.message + "\n"); break;
    case "output": appendOutput(e.host, e.stream, bytesText(e.data)); break;
    case "started": if (e.hosts) e.hosts.forEach((h) => hostPane(h)); soon(id); break;
    default: soon(id);
  }
}

function openRun(id) {
  if (current) current.abort.abort();
  current = { id, abort: new AbortController() };
  $("runs").hidden = true;
  $("run").hidden = false;
  $("hosts").replaceChildren();
  $("grid").replaceChildren();
  loadRun(id).then(() => follow(id, current)).catch(fail);
}

function route() {
  const run = readHash();
  if (!token()) return showLogin();
  showMain();
  if (run) return openRun(run);
  if (current) { current.abort.abort(); current = null; }
  $("run").hidden = true;
  $("runs").hidden = false;
  refreshRuns().catch(fail);
}

async function daemonLine() {
  try {
    const s = await api("/api/v1/status");
    $("daemon").textContent = `daemon pid ${s.pid}, up ${Math.round(s.uptime_s / 60)} min, ${s.hosts.length} hosts connected`;
  } catch (e) { fail(e); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    route();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
  window.addEventListener("hashchange", route);
  route();
  if (token()) daemonLine();
  setInterval(() => {
    if (!token() || $("main").hidden) return;
    if (!$("runs").hidden) refreshRuns().catch(fail);
    daemonLine();
  }, 3000);
});
