"""A tiny page renderer."""

from html import escape
from typing import TypedDict


class Site(TypedDict):
    title: str
    items: list[str]


SITE: Site = {"title": "Python app", "items": ["Readable", "Tested", "Offline"]}


def render(title: str, items: list[str]) -> str:
    rows = "".join(f"<li>{escape(item)}</li>" for item in items)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f"<body><h1>{escape(title)}</h1><ul>{rows}</ul></body></html>\n"
    )
