// Reports "file:line:column: severity: message (rule)" for a few house rules.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const RULES = [
  { rule: "no-var", severity: "error", pattern: /\bvar\s/g, message: "use let or const" },
  { rule: "no-console-error", severity: "warning", pattern: /console\.error\(/g, message: "console.error left in source" },
];
let errors = 0;
for (const name of readdirSync("src")) {
  const path = join("src", name);
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
