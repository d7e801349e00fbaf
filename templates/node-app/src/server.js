import { createServer } from "node:http";
import { render, site } from "./render.js";

const port = Number(process.env.PORT ?? 3000);
createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(render(site));
}).listen(port, () => console.log(`listening on ${port}`));
