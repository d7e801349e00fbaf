// The sessions dashboard: the owner's sessions; for one, its runs on a timeline with their output,
// its files (through getFiles), its static-analysis issues and its latest preview, all live: the
// session's events stream says when a run moved on, and the page then reads what changed.
"use strict";

const state = { token: "", session: null, stream: null, due: null, file: null, files: [] };
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

// What each list node was drawn from: its item's key and signature.
const drawn = new WeakMap();

// Make `list`'s children the nodes of `items`, in order. A node whose item (found by `key`) has the
// signature it was drawn with is kept as it is, so its focus, an opened log and scroll survive a
// refresh; only new or changed items are drawn, by `render`.
function reconcile(list, items, key, signature, render) {
  const old = new Map([...list.children].filter((node) => drawn.has(node)).map((node) => [drawn.get(node).key, node]));
  const nodes = items.map((item, index) => {
    const mark = { key: key(item, index), signature: signature(item) };
    const node = old.get(mark.key);
    if (node && drawn.get(node).signature === mark.signature) return node;
    const fresh = render(item);
    drawn.set(fresh, mark);
    return fresh;
  });
  const kept = new Set(nodes);
  for (const node of [...list.children]) if (!kept.has(node)) node.remove();
  // Only the new nodes are inserted: a kept node is not moved (moving it would drop its focus).
  nodes.forEach((node, index) => {
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
  });
}

// Write a text only when it changed: rewriting it resets its scroll and selection.
function setText(node, value) {
  if (node.textContent !== value) node.textContent = value;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status}`);
  return data;
}

async function text(path) {
  const response = await fetch(path, { headers: state.token ? { Authorization: `Bearer ${state.token}` } : {} });
  return response.ok ? response.text() : `(${response.status})`;
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
  const item = el("li", { class: "run", "data-run": run.runId, "data-action": run.action, "data-status": run.status },
    el("div", {}, el("strong", {}, run.action), " ", el("span", { class: `status ${run.status}` }, run.status)),
    timeline);
  if (run.error) item.append(el("p", { class: "error" }, run.error));
  for (const command of (run.result && run.result.results) || []) {
    item.append(el("pre", {}, `$ ${command.command}  (exit ${command.exitCode})\n${command.output || ""}${command.error || ""}`));
  }
  for (const command of (run.result && run.result.results) || []) {
    if (!command.log) continue;
    const shown = el("pre", { class: "full-log", hidden: true });
    const button = el("button", { type: "button", class: "show-log" }, `Full log of ${command.command}`);
    button.addEventListener("click", async () => {
      shown.textContent = await text(`/api/agent/${state.session}/log?name=${encodeURIComponent(command.log)}&stream=stdout`);
      shown.hidden = false;
    });
    item.append(el("p", { class: "log" }, button), shown);
  }
  if (run.result && run.result.previewUrl) {
    item.append(el("a", { href: run.result.previewUrl, target: "_blank", rel: "noopener" }, "preview"));
  }
  return item;
}

// The newest succeeded run of an action: what the panes show.
function latest(runs, action) {
  return runs.find((run) => run.action === action && run.status === "succeeded" && run.result);
}

function renderFiles(runs) {
  const listing = latest(runs, "getFiles");
  state.files = (listing && listing.result.files) || [];
  reconcile($("files"), state.files, (file) => file.filePath, () => "", (file) => {
    const button = el("button", { type: "button", class: "file", "data-file": file.filePath }, file.filePath);
    button.addEventListener("click", () => { state.file = file.filePath; showFile(); });
    return el("li", {}, button);
  });
  showFile();
}

function showFile() {
  const shown = state.files.find((file) => file.filePath === state.file);
  $("file-view").hidden = !shown;
  setText($("file-view"), shown ? shown.fileContents : "");
}

function renderAnalysis(runs) {
  const analysis = latest(runs, "runStaticAnalysisCode");
  const rows = [];
  for (const kind of ["lint", "typecheck"]) {
    for (const issue of (analysis && analysis.result[kind] && analysis.result[kind].issues) || []) {
      rows.push([kind, issue.filePath, `${issue.line}:${issue.column ?? ""}`, issue.message, issue.ruleId || ""].map(String));
    }
  }
  // Issues have no id: a row is known by its place, and drawn again when its cells change.
  reconcile($("analysis").tBodies[0], rows, (_, index) => index, (cells) => cells.join("\t"),
    (cells) => el("tr", { "data-kind": cells[0] }, ...cells.map((cell) => el("td", {}, cell))));
  setText($("analysis-summary"), analysis ? `${rows.length} issue(s) in the latest check` : "No check yet");
}

function renderPreview(url) {
  if ($("preview").dataset.url !== (url || "")) {
    $("preview").dataset.url = url || "";
    $("preview").replaceChildren(url ? el("a", { href: url, target: "_blank", rel: "noopener", id: "preview-link" }, "Open preview") : "No preview yet");
  }
  const frame = $("preview-frame");
  frame.hidden = !url;
  if (url && frame.getAttribute("src") !== url) {
    // Set before the src: a sandbox applies from the frame's next navigation on.
    frame.setAttribute("sandbox", frameSandbox(url));
    frame.setAttribute("src", url);
  }
}

// A preview on a host of its own keeps its origin (its localStorage, its cookies): that origin is
// not this page's, so allow-same-origin gives it nothing of ours. A preview by path may share this
// origin (or VIBESDK_PREVIEW_ORIGIN's, every preview's): it stays an opaque origin.
function frameSandbox(url) {
  const sandbox = "allow-scripts allow-forms";
  const target = new URL(url, location.href);
  const byPath = target.origin === location.origin || target.pathname.startsWith("/preview/");
  return byPath ? sandbox : `${sandbox} allow-same-origin`;
}

async function refreshSessions() {
  const { sessions } = await api("GET", "/api/agent");
  const drawnFrom = (s) => [s.projectName, s.templateName, s.action, s.status].join("|");
  reconcile($("sessions"), sessions, (s) => s.sessionId, drawnFrom, (s) => {
    // A button: reachable and usable from the keyboard.
    const button = el("button", { type: "button", class: "session" },
      el("div", {}, s.projectName || s.templateName || s.sessionId.slice(0, 8)),
      el("span", { class: `status ${s.status}` }, `${s.action} · ${s.status}`));
    button.addEventListener("click", () => select(s.sessionId));
    return el("li", { "data-session": s.sessionId, "data-status": s.status }, button);
  });
  // Selecting a session marks its item without drawing it again: the key that selected it keeps the focus.
  for (const item of $("sessions").children) item.classList.toggle("selected", item.dataset.session === state.session);
}

async function refreshDetail() {
  if (!state.session) return;
  const [session, { runs }] = await Promise.all([
    api("GET", `/api/agent/${state.session}`), api("GET", `/api/agent/${state.session}/runs`)]);
  $("detail").hidden = false;
  setText($("detail-title"), `${session.templateName} · ${session.sessionId}`);
  renderPreview(session.preview && session.preview.previewUrl);
  // A run is drawn again only when it moved on: a new status, transition or result.
  const movedOn = (run) => [run.status, run.transitions.length, run.updatedAt].join("|");
  reconcile($("runs"), runs, (run) => run.runId, movedOn, renderRun);
  renderFiles(runs);
  renderAnalysis(runs);
}

async function refresh() {
  try {
    await refreshSessions();
    await refreshDetail();
  } catch (error) {
    say(error.message, true);
  }
}

// One refresh for the events that come close together (a stream starts with every transition there).
function refreshSoon() {
  if (state.due) return;
  state.due = setTimeout(() => { state.due = null; refresh(); }, 100);
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Read the session's events stream (docs/API.md), refreshing on each transition, until another
// session is followed. EventSource cannot send an Authorization header: the stream is read by fetch.
async function follow(sessionId) {
  if (state.stream) state.stream.abort();
  const stream = new AbortController();
  state.stream = stream;
  let lastId = null;
  while (!stream.signal.aborted) {
    try {
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`/api/agent/${sessionId}/events`, { headers, signal: stream.signal });
      if (!response.ok && response.status !== 429 && response.status < 500) {
        const data = await response.json().catch(() => ({}));
        say(data.detail || `events: ${response.status}`, true);
        return;
      }
      if (response.ok) {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          // Events end with a blank line; a comment (the keep-alive) has no id.
          const blocks = (buffer + value).split("\n\n");
          buffer = blocks.pop();
          for (const block of blocks) {
            const id = block.split("\n").find((line) => line.startsWith("id: "));
            if (id) {
              lastId = id.slice(4);
              refreshSoon();
            }
          }
        }
      }
    } catch (error) {
      if (stream.signal.aborted) return;
    }
    // The server ends a stream after some minutes, or it broke: go on after the last event seen.
    await pause(1000);
  }
}

function select(sessionId) {
  state.session = sessionId;
  follow(sessionId);
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
    if (state.session) follow(state.session);
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
  $("analyse").addEventListener("click", () => queue("runStaticAnalysisCode", {}));
  $("list-files").addEventListener("click", () => queue("getFiles", {}));
  try {
    const { templates } = await api("GET", "/api/templates");
    $("template").replaceChildren(...templates.map((t) => el("option", { value: t.name }, t.name)));
  } catch (error) {
    say(error.message, true);
  }
  refresh();
}

start();
