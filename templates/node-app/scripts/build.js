import { mkdirSync, writeFileSync } from "node:fs";
import { render, site } from "../src/render.js";

mkdirSync("dist", { recursive: true });
writeFileSync("dist/index.html", render(site));
console.log("build: wrote dist/index.html");
