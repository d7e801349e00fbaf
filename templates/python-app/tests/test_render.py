import unittest

from app import render


class RenderTest(unittest.TestCase):
    def test_escapes_items(self) -> None:
        self.assertIn("<li>&lt;x&gt;</li>", render("t", ["<x>"]))


if __name__ == "__main__":
    unittest.main()
