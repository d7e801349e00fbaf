"""Renders the site into dist/index.html."""

from pathlib import Path

from app import SITE, render

Path("dist").mkdir(exist_ok=True)
Path("dist/index.html").write_text(render(SITE["title"], SITE["items"]))
print("build: wrote dist/index.html")
