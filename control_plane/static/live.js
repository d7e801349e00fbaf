// A live preview's page: reloads itself when a newer version is published, and reports the
// browser's errors to the runtime, which makes them the instance's runtime errors
// (control_plane/live.py). Loaded first in the page's head, before the app's own scripts.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.__vibesdkLive) return;
  window.__vibesdkLive = true;
  var base = me.getAttribute("data-base") || "/";
  var version = Number(me.getAttribute("data-version"));
  var MAX_PER_PAGE = 50;
  var queue = [];
  var sent = {};
  var count = 0;
  var timer = null;

  function text(value) {
    if (value instanceof Error) return value.message || String(value);
    if (typeof value === "string") return value;
    try { return JSON.stringify(value); } catch (e) { return String(value); }
  }

  function report(kind, message, source, line, column, stack) {
    message = String(message || "").slice(0, 2000);
    if (!message || count >= MAX_PER_PAGE) return;
    var key = kind + "|" + message + "|" + source + "|" + line;
    if (sent[key]) return;
    sent[key] = true;
    count += 1;
    var item = { kind: kind, message: message };
    if (source) item.source = String(source).slice(0, 500);
    if (line >= 0) item.line = line;
    if (column >= 0) item.column = column;
    if (stack) item.stack = String(stack).slice(0, 4000);
    queue.push(item);
    if (!timer) timer = setTimeout(flush, 300);
  }

  function flush() {
    timer = null;
    if (queue.length) send(queue.splice(0, 10), 0);
  }

  // text/plain: a simple request, no preflight, from a sandboxed (opaque) origin too. A refusal (one
  // report of this preview waits already, or the rate) is sent again later, a few times.
  function send(batch, attempt) {
    var body = JSON.stringify({ errors: batch, version: version });
    function again() {
      if (attempt < 5) setTimeout(function () { send(batch, attempt + 1); }, 2000 * (attempt + 1));
    }
    fetch(base + "__vibesdk/errors", { method: "POST", body: body, keepalive: true,
      headers: { "Content-Type": "text/plain" } }).then(function (answer) {
      if (answer.status === 429 || answer.status >= 500) again();
      else if (queue.length && !timer) timer = setTimeout(flush, 1000);
    }, again);
  }

  window.addEventListener("error", function (event) {
    if (!event.error && !event.message) return;  // a resource that failed to load: no script error
    var stack = event.error && event.error.stack;
    report("error", event.message || text(event.error), event.filename, event.lineno, event.colno, stack);
  });
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    report("unhandledrejection", text(reason), null, -1, -1, reason && reason.stack);
  });
  var consoleError = console.error;
  console.error = function () {
    var parts = Array.prototype.map.call(arguments, text);
    report("console.error", parts.join(" "), null, -1, -1, new Error().stack);
    return consoleError.apply(console, arguments);
  };

  function listen() {
    if (!window.EventSource) return;
    var stream = new EventSource(base + "__vibesdk/events");
    stream.addEventListener("version", function (event) {
      if (Number(event.data) > version) location.reload();
    });
    stream.addEventListener("gone", function () { stream.close(); });
  }
  listen();
})();
