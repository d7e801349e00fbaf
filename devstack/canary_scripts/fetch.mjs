// Run inside a sandbox by the canary (devstack/canary.py): `node fetch.mjs URL [K:V ...]`.
// Node's http and https modules ignore the proxy settings: this is the direct route, from Node.
// Exit 0, printing `ESCAPED: …`, only when the target itself answered (as fetch.py decides).
import http from "node:http";
import https from "node:https";

const [url, ...headerArgs] = process.argv.slice(2);
const headers = Object.fromEntries(headerArgs.map((h) => h.split(/:(.*)/s, 2).map((s) => s.trim())));
const secure = url.startsWith("https:");
const host = new URL(url).host;
const request = (secure ? https : http).get(url, { headers, timeout: 5000 }, (answer) => {
  let size = 0;
  answer.on("data", (chunk) => (size += chunk.length));
  answer.on("end", () => {
    const fromTarget = secure || (answer.statusCode >= 200 && answer.statusCode < 300);
    console.log(`${fromTarget ? "ESCAPED" : "not reached"}: node direct ${host} answered ${answer.statusCode} (${size} bytes)`);
    process.exit(fromTarget ? 0 : 1);
  });
});
request.on("timeout", () => request.destroy(new Error("timed out")));
request.on("error", (error) => {
  console.log(`not reached: node direct ${host}: ${error.code || ""} ${error.message}`);
  process.exit(1);
});
