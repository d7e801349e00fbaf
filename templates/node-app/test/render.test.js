import assert from "node:assert/strict";
import { test } from "node:test";
import { render } from "../src/render.js";

test("render escapes and lists items", () => {
  const html = render({ title: "A & B", items: ["<x>"] });
  assert.match(html, /<title>A &amp; B<\/title>/);
  assert.match(html, /<li>&lt;x&gt;<\/li>/);
});
