// Copies src/ to dist/, collapsing whitespace between HTML tags and in CSS.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const SRC = "src";
const OUT = "dist";

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

function minify(path, text) {
  if (path.endsWith(".html")) return text.replace(/>\s+</g, "><").trim() + "\n";
  if (path.endsWith(".css")) return text.replace(/\s+/g, " ").replace(/\s*([{}:;,])\s*/g, "$1").trim() + "\n";
  return text;
}

rmSync(OUT, { recursive: true, force: true });
let count = 0;
for (const path of files(SRC)) {
  const target = join(OUT, relative(SRC, path));
  mkdirSync(join(target, ".."), { recursive: true });
  writeFileSync(target, minify(path, readFileSync(path, "utf8")));
  count += 1;
}
if (!count) {
  console.error("build: src/ is empty");
  process.exit(1);
}
console.log(`build: wrote ${count} files to ${OUT}/`);
