// Run inside a sandbox by the canary (devstack/canary.py): `node fetch.mjs URL... [K:V ...]`.
// Node's http and https modules ignore the proxy settings: this is the direct route, from Node.
// Tries each URL, one line each; exit 0, printing `ESCAPED: …`, when any target itself answered
// (as fetch.py decides: over HTTPS any status, over plain HTTP a 2xx).
import http from "node:http";
import https from "node:https";

const args = process.argv.slice(2);
const urls = args.filter((arg) => /^https?:/.test(arg));
const headers = Object.fromEntries(
  args.filter((arg) => !urls.includes(arg)).map((h) => h.split(/:(.*)/s, 2).map((s) => s.trim())),
);

function attempt(url) {
  const secure = url.startsWith("https:");
  const host = new URL(url).host;
  return new Promise((resolve) => {
    const request = (secure ? https : http).get(url, { headers, timeout: 5000 }, (answer) => {
      let size = 0;
      answer.on("data", (chunk) => (size += chunk.length));
      answer.on("end", () => {
        const fromTarget = secure || (answer.statusCode >= 200 && answer.statusCode < 300);
        console.log(`${fromTarget ? "ESCAPED" : "not reached"}: node direct ${host} answered ${answer.statusCode} (${size} bytes)`);
        resolve(fromTarget);
      });
    });
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", (error) => {
      console.log(`not reached: node direct ${host}: ${error.code || ""} ${error.message}`);
      resolve(false);
    });
  });
}

let escaped = false;
for (const url of urls) escaped = (await attempt(url)) || escaped;
process.exit(escaped ? 0 : 1);
