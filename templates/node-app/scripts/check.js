// Syntax-checks every module with node --check; prints "file:line:column: error: message (syntax)".
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

let errors = 0;
for (const dir of ["src", "scripts"]) {
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
    const path = join(dir, name);
    try {
      execFileSync(process.execPath, ["--check", path], { stdio: "pipe" });
    } catch (error) {
      const text = String(error.stderr);
      const line = (text.match(/:(\d+)\n/) ?? [0, 1])[1];
      const message = (text.match(/SyntaxError: .*/) ?? ["SyntaxError"])[0];
      console.log(`${path}:${line}:1: error: ${message} (syntax)`);
      errors += 1;
    }
  }
}
process.exit(errors ? 1 : 0);
