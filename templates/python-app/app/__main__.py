import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from app import SITE, render


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = render(SITE["title"], SITE["items"]).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Page).serve_forever()
