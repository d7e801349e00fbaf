"""A dict that keeps the most recently set items only: what a long-lived process remembers stays bounded."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(OrderedDict[K, V]):
    """At most `limit` items. Setting an item makes it the newest; past the limit the oldest go.

    Reading an item does not make it newer: only setting it does.
    """

    def __init__(self, limit: int) -> None:
        assert limit > 0, f"a BoundedDict holds at least one item, not {limit}"
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
