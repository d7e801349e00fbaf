"""BoundedDict: the newest `limit` items by when they were last set."""

from __future__ import annotations

from vibesdk_gcp.bounded import BoundedDict


def test_keeps_at_most_the_limit() -> None:
    seen: BoundedDict[int, str] = BoundedDict(3)
    for number in range(10):
        seen[number] = str(number)
    assert list(seen.items()) == [(7, "7"), (8, "8"), (9, "9")]


def test_setting_again_makes_an_item_newest() -> None:
    seen: BoundedDict[str, int] = BoundedDict(2)
    seen["a"], seen["b"] = 1, 2
    seen["a"] = 3
    seen["c"] = 4
    assert dict(seen) == {"a": 3, "c": 4}


def test_reading_does_not_make_an_item_newer() -> None:
    seen: BoundedDict[str, int] = BoundedDict(2)
    seen["a"], seen["b"] = 1, 2
    assert seen.get("a") == 1 and "a" in seen
    seen["c"] = 3
    assert list(seen) == ["b", "c"]


def test_update_is_bounded_too() -> None:
    seen: BoundedDict[int, None] = BoundedDict(2)
    seen.update(dict.fromkeys(range(5)))
    assert list(seen) == [3, 4]
