export const site = { title: "Node app", items: ["Fast", "Small", "Offline"] };

export function render({ title, items }) {
  const list = items.map((item) => `<li>${escape(item)}</li>`).join("");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>` +
    `<body><h1>${escape(title)}</h1><ul>${list}</ul></body></html>\n`;
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
