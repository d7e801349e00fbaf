"""Every Firestore query in the code has the index Firestore needs, declared in infra/gcp.

The emulator answers every query without an index; Firestore answers FAILED_PRECONDITION. The
queries are read from the code itself (each chain of collection / collection_group, where and
order_by calls) and held to Firestore's rules
(https://cloud.google.com/firestore/docs/query-data/index-overview): a query on one field of one
collection uses the automatic single-field index; a collection-group query on one field needs a
collection-group single-field index (google_firestore_field); a query on several fields needs a
composite index of that scope, equality fields first.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import pytest

from vibesdk_gcp import names

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for folder in ("vibesdk_gcp", "control_plane", "functions") for p in (ROOT / folder).rglob("*.py"))
FIRESTORE_TF = ROOT / "infra" / "gcp" / "modules" / "firestore" / "main.tf"
# The module's variables, as infra/gcp/main.tf sets them from definitions.json.
TF_COLLECTIONS = {"var.runs_collection": names.RUNS_COLLECTION, "var.runs_subcollection": names.RUNS_SUBCOLLECTION}


@dataclass
class Query:
    where: str
    collection: str = ""
    group: bool = False
    equalities: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # range, in, order_by

    @property
    def fields(self) -> list[str]:
        return list(dict.fromkeys(self.equalities + self.others))


def _constant(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and hasattr(names, node.id):
        return str(getattr(names, node.id))
    return None


def _attribute_collections(tree: ast.Module) -> dict[str, str]:
    """self._x = client.collection(NAME): what each attribute stands for."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "collection" and call.args:
                name = _constant(call.args[0])
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and name:
                        found[target.attr] = name
    return found


def _chain(node: ast.expr, attributes: dict[str, str], query: Query) -> None:
    """Walk a call chain from its end to its start, filling in the query."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        method, args = node.func.attr, node.args
        if method == "where":
            filter_ = next((k.value for k in node.keywords if k.arg == "filter"), args[0] if args else None)
            if isinstance(filter_, ast.Call) and len(filter_.args) >= 2:
                name, op = _constant(filter_.args[0]), _constant(filter_.args[1])
                assert name and op, f"{query.where}: a filter the test cannot read"
                (query.equalities if op == "==" else query.others).append(name)
        elif method == "order_by" and args:
            query.others.append(_constant(args[0]) or "?")
        elif method in ("collection", "collection_group") and args and not query.collection:
            query.collection, query.group = _constant(args[0]) or "?", method == "collection_group"
        node = node.func.value
    if isinstance(node, ast.Attribute) and node.attr in attributes and not query.collection:
        query.collection = attributes[node.attr]


def queries() -> list[Query]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        attributes = _attribute_collections(tree)
        # A where/order_by call that another where/order_by is called on is inside a chain, not its end.
        inner = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("where", "order_by")
        }
        for node in ast.walk(tree):
            is_query_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if is_query_call and node.func.attr in ("where", "order_by") and id(node) not in inner:
                query = Query(f"{path.relative_to(ROOT)}:{node.lineno}")
                _chain(node, attributes, query)
                found.append(query)
    return found


def declared() -> tuple[set[tuple[str, str, tuple[str, ...]]], set[tuple[str, str]]]:
    """Composite indexes (scope, collection, fields) and collection-group field indexes (collection, field)."""
    parsed = hcl2.loads(FIRESTORE_TF.read_text())
    composites, group_fields = set(), set()
    for entry in parsed.get("resource", []):
        for kind, named in entry.items():
            for body in named.values():
                if kind.strip('"') == "google_firestore_index":
                    scope = body.get("query_scope", '"COLLECTION"').strip('"')
                    fields = tuple(f["field_path"].strip('"') for f in body["fields"])
                    composites.add((scope, TF_COLLECTIONS[body["collection"].strip("${}")], fields))
                if kind.strip('"') == "google_firestore_field":
                    for config in body.get("index_config", []):
                        for index in config.get("indexes", []):
                            if index.get("query_scope", "").strip('"') == "COLLECTION_GROUP":
                                group_fields.add(
                                    (TF_COLLECTIONS[body["collection"].strip("${}")], body["field"].strip('"'))
                                )
    return composites, group_fields


def test_the_code_has_queries_to_check() -> None:
    found = queries()
    assert len(found) >= 5 and all(q.collection for q in found), found


@pytest.mark.parametrize("query", queries(), ids=lambda q: q.where)
def test_every_query_has_its_index(query: Query) -> None:
    composites, group_fields = declared()
    scope = "COLLECTION_GROUP" if query.group else "COLLECTION"
    if len(query.fields) == 1:
        if query.group:
            assert (query.collection, query.fields[0]) in group_fields, f"{query.where}: no collection-group index"
        return
    wanted = query.equalities + [f for f in query.others if f not in query.equalities]
    assert any(
        s == scope and c == query.collection and list(fields[: len(wanted)]) == wanted for s, c, fields in composites
    ), f"{query.where}: no {scope} composite index on {query.collection} {wanted}"
