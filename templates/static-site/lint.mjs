// Reports HTML problems as "file:line:column: severity: message (rule)".
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const RULES = [
  { rule: "img-alt", severity: "warning", pattern: /<img(?![^>]*\balt=)[^>]*>/g, message: "img without alt text" },
  { rule: "inline-style", severity: "warning", pattern: /\sstyle="/g, message: "inline style; use src/style.css" },
  { rule: "no-title", severity: "error", pattern: /<head>(?![\s\S]*<title>)/g, message: "head without a title" },
];

function* htmlFiles(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* htmlFiles(path);
    else if (path.endsWith(".html")) yield path;
  }
}

let errors = 0;
for (const path of htmlFiles("src")) {
  const text = readFileSync(path, "utf8");
  for (const { rule, severity, pattern, message } of RULES) {
    for (const match of text.matchAll(pattern)) {
      const before = text.slice(0, match.index).split("\n");
      console.log(`${path}:${before.length}:${before.at(-1).length + 1}: ${severity}: ${message} (${rule})`);
      if (severity === "error") errors += 1;
    }
  }
}
process.exit(errors ? 1 : 0);
