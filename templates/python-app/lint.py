"""Reports "file:line:column: severity: message (rule)" for a few house rules."""

import ast
import sys
from pathlib import Path

errors = 0
for path in sorted(Path(".").rglob("*.py")):
    if "dist" in path.parts:
        continue
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and path.name != "build.py":
            print(f"{path}:{node.lineno}:{node.col_offset + 1}: warning: print() in app code (no-print)")
        if isinstance(node, ast.ExceptHandler) and node.type is None:
            print(f"{path}:{node.lineno}:{node.col_offset + 1}: error: bare except (no-bare-except)")
            errors += 1
sys.exit(1 if errors else 0)
