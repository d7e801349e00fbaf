// The runs dashboard: the owner's sessions, each run's transitions on a timeline, live.
"use strict";

const state = { token: "", session: null, timer: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status}`);
  return data;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function seconds(from, to) {
  return ((new Date(to) - new Date(from)) / 1000).toFixed(2);
}

function renderRun(run) {
  const first = run.transitions[0];
  const timeline = el("div", { class: "timeline" }, ...run.transitions.map((t) =>
    el("span", { class: `step ${t.status}` }, `${t.status} +${seconds(first.at, t.at)} s`)));
  const item = el("li", { class: "run", "data-run": run.runId, "data-status": run.status },
    el("div", {}, el("strong", {}, run.action), " ", el("span", { class: `status ${run.status}` }, run.status)),
    timeline);
  if (run.error) item.append(el("p", { class: "error" }, run.error));
  for (const command of (run.result && run.result.results) || []) {
    item.append(el("pre", {}, `$ ${command.command}  (exit ${command.exitCode})\n${command.output || ""}${command.error || ""}`));
  }
  if (run.result && run.result.previewUrl) {
    item.append(el("a", { href: run.result.previewUrl, target: "_blank", rel: "noopener" }, "preview"));
  }
  return item;
}

async function refreshSessions() {
  const { sessions } = await api("GET", "/api/agent");
  $("sessions").replaceChildren(...sessions.map((s) => {
    const item = el("li", { "data-session": s.sessionId, "data-status": s.status },
      el("div", {}, s.projectName || s.templateName || s.sessionId.slice(0, 8)),
      el("span", { class: `status ${s.status}` }, `${s.action} · ${s.status}`));
    if (s.sessionId === state.session) item.classList.add("selected");
    item.addEventListener("click", () => select(s.sessionId));
    return item;
  }));
}

async function refreshDetail() {
  if (!state.session) return;
  const [session, { runs }] = await Promise.all([
    api("GET", `/api/agent/${state.session}`), api("GET", `/api/agent/${state.session}/runs`)]);
  $("detail").hidden = false;
  $("detail-title").textContent = `${session.templateName} · ${session.sessionId}`;
  const url = session.preview && session.preview.previewUrl;
  $("preview").replaceChildren(url ? el("a", { href: url, target: "_blank", rel: "noopener", id: "preview-link" }, "Open preview") : "No preview yet");
  $("runs").replaceChildren(...runs.map(renderRun));
}

async function refresh() {
  try {
    await refreshSessions();
    await refreshDetail();
  } catch (error) {
    say(error.message, true);
  }
}

function select(sessionId) {
  state.session = sessionId;
  refresh();
}

async function queue(action, params) {
  try {
    await api("POST", `/api/agent/${state.session}/actions`, { action, params });
    refresh();
  } catch (error) {
    say(error.message, true);
  }
}

async function start() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  state.token = fromHash || localStorage.getItem("vibesdk-token") || "";
  $("token").value = state.token;
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem("vibesdk-token", state.token);
    refresh();
  });
  $("create").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const queued = await api("POST", "/api/agent", { templateName: $("template").value, projectName: $("project").value || null });
      say(`queued ${queued.action}`);
      select(queued.sessionId);
    } catch (error) {
      say(error.message, true);
    }
  });
  $("command").addEventListener("submit", (event) => {
    event.preventDefault();
    const line = $("command-line").value.trim();
    if (line) queue("executeCommands", { commands: [line] });
  });
  $("deploy").addEventListener("click", () => queue("deployInstance", {}));
  try {
    const { templates } = await api("GET", "/api/templates");
    $("template").replaceChildren(...templates.map((t) => el("option", { value: t.name }, t.name)));
  } catch (error) {
    say(error.message, true);
  }
  refresh();
  state.timer = setInterval(refresh, 1000);
}

start();
