"""Extract the schema of the resource and data types infra/gcp uses from the Google providers' Go source.

    python -m tests.terraform_schema.extract \\
        --google /work/.mirror/hashicorp+terraform-provider-google/repo \\
        --google-beta /work/.mirror/hashicorp+terraform-provider-google-beta/repo --tag v7.45.0

Each argument is a provider's git directory (the search tool's `fetch` of
hashicorp/terraform-provider-google and -beta); the tag is the release versions.tf pins. The types
are read where the provider registers them (`registry.Schema{Name: "google_x", Schema: ...}`) and
their `schema.Schema` maps are evaluated: literals, the package's functions and variables they call,
and the few helpers the handwritten resources build with (MergeSchemas, ResourceIamMember,
DatasourceSchemaFromResourceSchema, Add*FieldsToSchema). What Terraform then sees follows
terraform-plugin-sdk v2's helper/schema/core_schema.go: a list or set of a schema.Resource is a
nested block unless it is computed only or ConfigMode is Attr; a required block has at least one
item; an optional one none; `id` is an optional argument; `Timeouts` make a `timeouts` block.
Anything the evaluator does not understand stops it with the expression it met: never a guess.
The result, tests/terraform_schema/google.json, is what tests/test_terraform_schema.py checks against.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INFRA = HERE.parent.parent / "infra" / "gcp"
OUTPUT = HERE / "google.json"
MODULE = re.compile(r"^github\.com/hashicorp/terraform-provider-google(?:-beta)?/")


class Unsupported(Exception):
    """An expression the evaluator cannot reduce to a schema."""


# ---- Go text: strings, comments, brackets --------------------------------------------------


def _skip(text: str, i: int) -> int:
    """The index after the string, rune or comment starting at i (or i if none starts there)."""
    c = text[i]
    if c == '"' or c == "'":
        j = i + 1
        while text[j] != c:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    if c == "`":
        return text.index("`", i + 1) + 1
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        return text.index("*/", i + 2) + 2
    return i


def close_of(text: str, i: int) -> int:
    """Index of the bracket closing the one at i."""
    depth = 0
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Unsupported(f"unbalanced bracket in {text[:80]!r}")


def split_top(text: str, separators: str) -> list[str]:
    """Text split at separators outside brackets, strings and comments (comments dropped)."""
    parts, depth, start, i, out = [], 0, 0, 0, []
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            if text[i] == "/":  # a comment: keep the line break a // comment ends on
                out.append(text[start:i])
                start = j
            i = j
            continue
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in separators:
            out.append(text[start:i])
            parts.append("".join(out))
            out, start = [], i + 1
        i += 1
    out.append(text[start:])
    parts.append("".join(out))
    return [p.strip() for p in parts if p.strip()]


def key_value(element: str) -> tuple[str, str]:
    """`key: value` of a composite literal's element."""
    i = 0
    while i < len(element):
        j = _skip(element, i)
        if j != i:
            i = j
            continue
        if element[i] in "([{":
            i = close_of(element, i) + 1
            continue
        if element[i] == ":":
            return element[:i].strip(), element[i + 1 :].strip()
        i += 1
    raise Unsupported(f"not a key: value element: {element[:80]!r}")


def go_string(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    return str(json.loads(literal))


# ---- the source: packages read from the provider's git directory at the tag -----------------


@dataclass
class Package:
    path: str
    text: str
    imports: dict[str, str]
    functions: dict[str, tuple[list[str], str]] = field(default_factory=dict)  # name -> (params, body)
    variables: dict[str, str] = field(default_factory=dict)  # name -> expression


class Source:
    def __init__(self, git_dir: str, tag: str) -> None:
        self.git_dir, self.tag = git_dir, tag
        self.packages: dict[str, Package] = {}
        self.root = "google-beta" if "google-beta" in self.ls("") else "google"

    def git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", self.git_dir, *args], check=True, capture_output=True).stdout

    def ls(self, directory: str) -> list[str]:
        listing = self.git("ls-tree", "--name-only", f"{self.tag}:{directory}" if directory else self.tag)
        return listing.decode().split()

    def package(self, path: str) -> Package:
        if path not in self.packages:
            texts, imports = [], {}
            with tarfile.open(fileobj=io.BytesIO(self.git("archive", self.tag, "--", path))) as archive:
                for member in archive.getmembers():
                    name = member.name
                    if not name.endswith(".go") or name.endswith("_test.go") or name.count("/") != path.count("/") + 1:
                        continue
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    text = extracted.read().decode()
                    texts.append(text)
                    for alias, target in re.findall(r'^\s*(\w+)?\s*"([^"]+)"\s*$', _imports(text), re.M):
                        if MODULE.match(target):
                            imports[alias or target.rsplit("/", 1)[1]] = MODULE.sub("", target)
            package = Package(path, "\n".join(texts), imports)
            _index(package)
            self.packages[path] = package
        return self.packages[path]

    def registrations(self) -> dict[str, tuple[str, str]]:
        """{"resource.google_x" | "data.google_x": (package path, schema expression)}."""
        found: dict[str, tuple[str, str]] = {}
        hits = self.git("grep", "-l", "-E", r"registry\.Schema\{", self.tag, "--", f"{self.root}/services")
        for line in hits.decode().split():
            path = line.split(":", 1)[1]
            directory = path.rsplit("/", 1)[0]
            text = self.git("show", f"{self.tag}:{path}").decode()
            for match in re.finditer(r"registry\.Schema\{", text):
                body = text[match.end() - 1 : close_of(text, match.end() - 1) + 1]
                fields = dict(key_value(e) for e in split_top(body[1:-1], ",\n"))
                kind = {
                    "registry.SchemaTypeResource": "resource",
                    "registry.SchemaTypeIAMResource": "resource",
                    "registry.SchemaTypeDataSource": "data",
                    "registry.SchemaTypeIAMDataSource": "data",
                }.get(fields.get("Type", ""))
                if kind:
                    found[f"{kind}.{go_string(fields['Name'])}"] = (directory, fields["Schema"])
        return found


def _imports(text: str) -> str:
    block = re.search(r"^import \((.*?)^\)", text, re.S | re.M)
    single = re.findall(r"^import (\w+ )?(\"[^\"]+\")", text, re.M)
    return (block.group(1) if block else "") + "\n".join(f"{a}{p}" for a, p in single)


def _index(package: Package) -> None:
    text = package.text
    for match in re.finditer(r"^func (\w+)\(", text, re.M):
        params_end = close_of(text, match.end() - 1)
        params = [p.split()[0] for p in split_top(text[match.end() : params_end], ",") if p.split()]
        brace = text.index("{", params_end)
        package.functions[match.group(1)] = (params, text[brace + 1 : close_of(text, brace)])
    for match in re.finditer(r"^var (\w+)(?: [\w.*\[\]]+)? = ", text, re.M):
        package.variables[match.group(1)] = _expression_at(text, match.end())
    for match in re.finditer(r"^var \(", text, re.M):
        block = text[match.end() : close_of(text, match.end() - 1)]
        for statement in split_top(block, "\n;"):
            named = re.match(r"(\w+)(?: [\w.*\[\]]+)? = ", statement)
            if named:
                package.variables[named.group(1)] = statement[named.end() :]


def _expression_at(text: str, i: int) -> str:
    """The expression that starts at i and runs to the end of its line (brackets spanning lines)."""
    j = i
    while j < len(text) and text[j] != "\n":
        k = _skip(text, j)
        if k != j:
            j = k
            continue
        j = close_of(text, j) + 1 if text[j] in "([{" else j + 1
    return text[i:j]


# ---- evaluation: expressions to schemas ------------------------------------------------------

# An attribute: {"type", "required", "optional", "computed", "min_items", "max_items", "elem",
# "config_mode", "removed"}; elem is a Resource ({"schema": {...}, "timeouts": [...]}) or a primitive.
Attribute = dict[str, Any]
Resource = dict[str, Any]


@dataclass
class Context:
    source: Source
    package: Package
    env: dict[str, Any] = field(default_factory=dict)


def evaluate(expr: str, ctx: Context) -> Any:
    expr = split_top(expr, "")[0] if expr.strip() else expr
    expr = expr.strip()
    if expr.startswith("&"):
        expr = expr[1:].strip()
    if expr in ("true", "false"):
        return expr == "true"
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    if expr.startswith(('"', "`")):
        return go_string(expr)
    if re.fullmatch(r"schema\.(Type\w+|SchemaConfigMode\w+)", expr):
        return expr.split(".")[1]
    literal = re.match(
        r"(schema\.Resource|schema\.Schema|map\[string\]\*schema\.Schema|schema\.ResourceTimeout)\{", expr
    )
    if literal and close_of(expr, literal.end() - 1) == len(expr) - 1:
        return _literal(literal.group(1), expr[literal.end() : -1], ctx)
    if expr.startswith("{") and close_of(expr, 0) == len(expr) - 1:
        return _literal("schema.Schema", expr[1:-1], ctx)
    selector = re.fullmatch(r"(.+)\.(Schema|Elem)", expr)
    if selector and not re.fullmatch(r"\w+", selector.group(1)):
        value = evaluate(selector.group(1), ctx)
        key = "schema" if selector.group(2) == "Schema" else "elem"
        if isinstance(value, dict) and key in value:
            return value[key]
        raise Unsupported(f"{expr}: no {selector.group(2)} there")
    call = re.match(r"([\w.]+)\(", expr)
    if call and close_of(expr, call.end() - 1) == len(expr) - 1:
        return _call(call.group(1), split_top(expr[call.end() : -1], ","), ctx)
    if re.fullmatch(r"\w+", expr):
        if expr in ctx.env:
            return ctx.env[expr]
        if expr in ctx.package.variables:
            return evaluate(ctx.package.variables[expr], Context(ctx.source, ctx.package))
    qualified = re.fullmatch(r"(\w+)\.(\w+)", expr)
    if qualified and qualified.group(1) in ctx.package.imports:
        other = ctx.source.package(ctx.package.imports[qualified.group(1)])
        if qualified.group(2) in other.variables:
            return evaluate(other.variables[qualified.group(2)], Context(ctx.source, other))
    raise Unsupported(f"cannot evaluate {expr[:120]!r} in {ctx.package.path}")


_ATTRIBUTE_FIELDS = {
    "Type": "type",
    "Required": "required",
    "Optional": "optional",
    "Computed": "computed",
    "MinItems": "min_items",
    "MaxItems": "max_items",
    "Elem": "elem",
    "ConfigMode": "config_mode",
    "Removed": "removed",
}


def _literal(kind: str, body: str, ctx: Context) -> Any:
    elements = [key_value(e) for e in split_top(body, ",")]
    if kind == "map[string]*schema.Schema":
        return {go_string(key): evaluate(value, ctx) for key, value in elements}
    if kind == "schema.Resource":
        fields = dict(elements)
        schema_map = evaluate(fields["Schema"], ctx) if "Schema" in fields else {}
        timeouts = evaluate(fields["Timeouts"], ctx) if "Timeouts" in fields else None
        return {"schema": schema_map, "timeouts": timeouts}
    if kind == "schema.ResourceTimeout":
        return sorted(key.lower() for key, _ in elements)
    attribute: Attribute = {}
    for key, value in elements:
        if key in _ATTRIBUTE_FIELDS:
            attribute[_ATTRIBUTE_FIELDS[key]] = evaluate(value, ctx)
    if "type" not in attribute:
        raise Unsupported(f"attribute without a Type: {body[:120]!r}")
    return attribute


def _call(name: str, args: list[str], ctx: Context) -> Any:
    qualifier, _, function = name.rpartition(".")
    if name.endswith("MergeSchemas"):
        merged: dict[str, Any] = {}
        for arg in args:
            merged |= _copy(evaluate(arg, ctx))
        return merged
    if name.endswith("DatasourceSchemaFromResourceSchema"):
        return _datasource_schema(evaluate(args[0], ctx))
    if name.endswith("tpgiamresource.ResourceIamMember"):
        base = _call("tpgiamresource.IamMemberBase", [], ctx)
        return {"schema": base | _copy(evaluate(args[0], ctx)), "timeouts": _iam_timeouts(args[3:])}
    if name.endswith("tpgiamresource.IamMemberBase"):
        package = ctx.source.package(ctx.package.imports.get("tpgiamresource", f"{ctx.source.root}/tpgiamresource"))
        return _copy(evaluate(package.variables["IamMemberBaseSchema"], Context(ctx.source, package)))
    package = ctx.package
    if qualifier:
        if qualifier not in ctx.package.imports:
            raise Unsupported(f"call of {name} outside the provider")
        package = ctx.source.package(ctx.package.imports[qualifier])
    if function not in package.functions:
        raise Unsupported(f"no function {function} in {package.path}")
    params, body = package.functions[function]
    env = {param: evaluate(arg, ctx) for param, arg in zip(params, args, strict=False)}
    return run(body, Context(ctx.source, package, env))


def _iam_timeouts(options: list[str]) -> list[str] | None:
    # ResourceIamMember sets Timeouts{Create} only when an option IamCreateTimeOut(n > 0) is passed.
    return ["create"] if any(re.search(r"IamCreateTimeOut\(\s*[1-9]", o) for o in options) else None


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _datasource_schema(resource_schema: dict[str, Attribute]) -> dict[str, Attribute]:
    """tpgresource.DatasourceSchemaFromResourceSchema: every field computed only, nested too."""
    converted: dict[str, Attribute] = {}
    for name, attribute in resource_schema.items():
        new: Attribute = {"type": attribute["type"], "computed": True}
        elem = attribute.get("elem")
        if isinstance(elem, dict) and "schema" in elem:
            new["elem"] = {"schema": _datasource_schema(elem["schema"]), "timeouts": None}
        elif elem is not None:
            new["elem"] = elem
        converted[name] = new
    return converted


# schema.Schema fields that change nothing of which arguments and blocks a configuration may have.
_COSMETIC = (
    "ValidateFunc",
    "ValidateDiagFunc",
    "Description",
    "Deprecated",
    "Default",
    "DiffSuppressFunc",
    "StateFunc",
)


def run(body: str, ctx: Context) -> Any:
    """Run a function body's straight-line statements that build a schema; return what it returns."""
    for statement in split_top(body, "\n;"):
        assign = re.match(r"(?:var\s+)?(\w+)\s*:?=\s*(.+)$", statement, re.S)
        fix = re.match(
            r"(?:tpgresource\.)?(AddRequiredFieldsToSchema|AddOptionalFieldsToSchema)\((.*)\)$", statement, re.S
        )
        flag = re.match(r'(\w+)\["(\w+)"\]\.(Required|Optional|Computed)\s*=\s*(true|false)$', statement)
        if statement.startswith("return "):
            return evaluate(statement[len("return ") :], ctx)
        if fix:
            target, *keys = split_top(fix.group(2), ",")
            required = fix.group(1) == "AddRequiredFieldsToSchema"
            for key in keys:
                ctx.env[target][go_string(key)] |= {"computed": False, "optional": not required, "required": required}
        elif flag and flag.group(1) in ctx.env:
            ctx.env[flag.group(1)][flag.group(2)][flag.group(3).lower()] = flag.group(4) == "true"
        elif re.match(rf'\w+\["\w+"\]\.(?:{"|".join(_COSMETIC)})\s*=', statement):
            continue  # validation, defaults and docs: not the shape of the configuration
        elif assign and not statement.startswith(("if ", "for ", "switch ")):
            try:
                ctx.env[assign.group(1)] = evaluate(assign.group(2), ctx)
            except Unsupported:
                ctx.env.pop(assign.group(1), None)  # not a schema; fails later if a schema needs it
        elif any(re.search(rf"\b{re.escape(name)}\b", statement) for name in ctx.env if _is_schema(ctx.env[name])):
            raise Unsupported(f"a statement changes a schema in a way not understood: {statement[:160]!r}")
    raise Unsupported(f"no return in {ctx.package.path}")


def _is_schema(value: Any) -> bool:
    return isinstance(value, dict)


# ---- what Terraform sees: helper/schema's core schema ---------------------------------------

Block = dict[str, Any]


def core_block(resource: Resource, top: bool) -> Block:
    """{"arguments": {name: "required" | "optional" | "computed"}, "blocks": {name: NestedBlock}}."""
    arguments: dict[str, str] = {}
    blocks: dict[str, Any] = {}
    for name, attribute in sorted(resource["schema"].items()):
        if attribute.get("removed"):
            continue
        elem = attribute.get("elem")
        is_block = (
            attribute["type"] in ("TypeList", "TypeSet")
            and isinstance(elem, dict)
            and "schema" in elem
            and attribute.get("config_mode") != "SchemaConfigModeAttr"
            and not (attribute.get("computed") and not attribute.get("optional"))
        )
        if is_block:
            min_items = attribute.get("min_items", 0)
            if attribute.get("required") and min_items == 0:
                min_items = 1
            if attribute.get("optional"):
                min_items = 0
            blocks[name] = {
                "nesting": "list" if attribute["type"] == "TypeList" else "set",
                "min_items": min_items,
                "max_items": attribute.get("max_items", 0),
            } | core_block(elem, top=False)
        elif attribute.get("required"):
            arguments[name] = "required"
        elif attribute.get("optional"):
            arguments[name] = "optional"
        else:
            arguments[name] = "computed"
    if top:
        arguments.setdefault("id", "optional")
        if resource.get("timeouts"):
            blocks["timeouts"] = {
                "nesting": "single",
                "min_items": 0,
                "max_items": 1,
                "arguments": dict.fromkeys(resource["timeouts"], "optional"),
                "blocks": {},
            }
    return {"arguments": arguments, "blocks": blocks}


# ---- the types infra/gcp uses ----------------------------------------------------------------


def used_types(infra: Path) -> set[str]:
    found = set()
    for path in infra.rglob("*.tf"):
        for kind, name in re.findall(r'^(resource|data)\s+"(google[\w-]*?_\w+)"', path.read_text(), re.M):
            found.add(f"{kind}.{name}")
    return found


def extract(git_dir: str, tag: str, types: set[str]) -> dict[str, Block]:
    source = Source(git_dir, tag)
    registered = source.registrations()
    schema = {}
    for type_name in sorted(types):
        if type_name not in registered:
            continue  # not in this provider (the test says so if infra/gcp needs it here)
        directory, expression = registered[type_name]
        package = source.package(directory)
        resource = evaluate(expression, Context(source, package))
        schema[type_name] = core_block(resource, top=True)
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--google", required=True, help="git directory of hashicorp/terraform-provider-google")
    parser.add_argument(
        "--google-beta", required=True, help="git directory of hashicorp/terraform-provider-google-beta"
    )
    parser.add_argument("--tag", required=True, help="the release versions.tf pins, e.g. v7.45.0")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    types = used_types(INFRA)
    result = {
        "tag": args.tag,
        "generated_by": "tests/terraform_schema/extract.py",
        "providers": {
            "google": extract(args.google, args.tag, types),
            "google-beta": extract(args.google_beta, args.tag, types),
        },
    }
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
