"""A small renderer for the subset of Helm's Go-template language that our chart uses.

`helm` itself cannot be installed from the registries on the test machines, so the chart is
rendered here and the manifests are checked against the Kubernetes schemas. The renderer is
deliberately strict: anything outside the subset (an unknown function, a variable
assignment, `tpl`, ...) raises `TemplateError` instead of rendering something plausible, so
a chart change that needs more than the subset fails loudly rather than passing untested.

Supported: text with `{{- -}}` trimming; `{{/* comments */}}`; `define` / `include`;
`if` / `else if` / `else`, `with`, `range` (with `$k, $v :=` or `$v :=`); pipelines with
parenthesised sub-pipelines; `.Values`, `.Release`, `.Chart`, `.Template` field chains, `$`
and range variables; the functions in `FUNCTIONS`.

Helm semantics that matter for correctness and are mirrored here:
- numbers from values files are float64 in Helm, so `{{ 1000000 }}` from values prints
  `1e+06` (use `| int`); integral floats print without a decimal point;
- a missing map key renders as an empty string, but traversing *through* a missing key is
  an error ("nil pointer evaluating");
- `toYaml` drops the trailing newline; `default`, `required`, `empty` use Sprig's notion of
  emptiness.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import yaml


class TemplateError(Exception):
    """The template is invalid, uses something outside the subset, or called `fail`."""


# --------------------------------------------------------------------------- values


def go_numbers(value: Any) -> Any:
    """Convert every int loaded from YAML into float, as Helm's JSON round trip does."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [go_numbers(v) for v in value]
    return value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge recursively, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def format_float(number: float) -> str:
    """Go's `%v` for float64 (strconv 'g', shortest): exponent form when exp < -4 or exp >= 6."""
    if number == 0:
        return "0"
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "+Inf" if number > 0 else "-Inf"
    dec = Decimal(repr(number)).normalize()
    sign, digits, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    exp = len(digits) + exponent - 1
    if exp < -4 or exp >= 6:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    return format(dec, "f")


def to_str(value: Any) -> str:
    """Go's fmt `%v` for the value kinds that reach a template's output."""
    if value is None:
        return ""  # Helm replaces "<no value>" with an empty string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list):
        return "[" + " ".join(to_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{to_str(value[k])}" for k in sorted(value)) + "]"
    raise TemplateError(f"cannot print a {type(value).__name__}")


def truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


class _YamlDumper(yaml.SafeDumper):
    pass


def _represent_float(dumper: yaml.SafeDumper, data: float) -> yaml.Node:
    # Go's YAML marshaller writes integral float64 values without a decimal point.
    if data.is_integer() and abs(data) < 1e21:
        return dumper.represent_int(int(data))
    return dumper.represent_float(data)


_YamlDumper.add_representer(float, _represent_float)


def to_yaml(value: Any) -> str:
    text = yaml.dump(value, Dumper=_YamlDumper, default_flow_style=False, sort_keys=True, allow_unicode=True)
    if text.endswith("...\n"):  # a bare scalar document
        text = text[: -len("...\n")]
    return text.rstrip("\n")


# --------------------------------------------------------------------------- functions


def _go_quote(value: Any) -> str:
    text = to_str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _printf(fmt: str, *args: Any) -> str:
    parts = iter(args)

    def sub(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        try:
            arg = next(parts)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        if verb in ("s", "v"):
            return to_str(arg)
        if verb == "d":
            return str(int(arg))
        if verb == "q":
            return _go_quote(arg)
        raise TemplateError(f"printf verb %{verb} is outside the supported subset")

    return re.sub(r"%([%svdq])", sub, fmt)


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(f"required: {message}")
    return value


def _fail(message: str) -> Any:
    raise TemplateError(f"fail: {message}")


def _default(default: Any, *given: Any) -> Any:
    if not given or not truthy(given[0]):
        return default
    return given[0]


def _trunc(length: float, text: str) -> str:
    n = int(length)
    return text[:n] if n >= 0 else text[n:]


def _add(*numbers: Any) -> int:
    return sum(int(n) for n in numbers)


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0
    return int(float(value))


def _has_key(mapping: dict[str, Any], key: str) -> bool:
    if not isinstance(mapping, dict):
        raise TemplateError("hasKey expects a map")
    return key in mapping


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        return op(a, b)

    return compare


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "print": lambda *args: "".join(to_str(a) for a in args),
    "printf": _printf,
    "quote": lambda *args: " ".join(_go_quote(a) for a in args if a is not None),
    "squote": lambda *args: " ".join(f"'{to_str(a)}'" for a in args if a is not None),
    "toYaml": to_yaml,
    "indent": lambda n, text: " " * int(n) + to_str(text).replace("\n", "\n" + " " * int(n)),
    "nindent": lambda n, text: "\n" + " " * int(n) + to_str(text).replace("\n", "\n" + " " * int(n)),
    "default": _default,
    "required": _required,
    "fail": _fail,
    "empty": lambda value: not truthy(value),
    "sha256sum": lambda text: hashlib.sha256(to_str(text).encode()).hexdigest(),
    "b64enc": lambda text: base64.b64encode(to_str(text).encode()).decode(),
    "trunc": _trunc,
    "trimSuffix": lambda suffix, text: text[: -len(suffix)] if suffix and text.endswith(suffix) else text,
    "replace": lambda old, new, text: to_str(text).replace(old, new),
    "contains": lambda needle, text: needle in to_str(text),
    "lower": lambda text: to_str(text).lower(),
    "toString": to_str,
    "int": _int,
    "add": _add,
    "hasKey": _has_key,
    "eq": _compare(lambda a, b: a == b),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "not": lambda value: not truthy(value),
}


# --------------------------------------------------------------------------- parsing

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<declare>:=)
      | (?P<punct>[()|,])
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
      | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    source = source.strip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"cannot parse action near {source[pos:pos + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
        while pos < len(source) and source[pos].isspace():
            pos += 1
    return tokens


# A pipeline is a list of commands; a command is a list of operands; an operand is a Token or
# a nested pipeline (from parentheses).
Operand = Any
Pipeline = list[list[Operand]]


def parse_pipeline(tokens: list[Token], pos: int = 0, closing: str | None = None) -> tuple[Pipeline, int]:
    commands: Pipeline = [[]]
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.kind == "punct" and tok.text == ")":
            if closing != ")":
                raise TemplateError("unbalanced ')'")
            return commands, pos + 1
        if tok.kind == "punct" and tok.text == "(":
            inner, pos = parse_pipeline(tokens, pos + 1, ")")
            commands[-1].append(inner)
            continue
        if tok.kind == "punct" and tok.text == "|":
            if not commands[-1]:
                raise TemplateError("empty command before '|'")
            commands.append([])
        elif tok.kind in ("declare",) or (tok.kind == "punct" and tok.text == ","):
            raise TemplateError("variable declarations are only supported in range")
        else:
            commands[-1].append(tok)
        pos += 1
    if closing:
        raise TemplateError("missing ')'")
    if not commands[-1]:
        raise TemplateError("empty pipeline")
    return commands, pos


@dataclass
class Node:
    kind: str  # text | action | if | with | range
    text: str = ""
    pipeline: Pipeline = field(default_factory=list)
    # if: list of (pipeline, body); with/range: one branch
    branches: list[tuple[Pipeline, list["Node"]]] = field(default_factory=list)
    else_body: list["Node"] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)


def _split(source: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) parts, applying trim markers."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        parts.append(("text", text))
        parts.append(("action", match.group(2).strip()))
        pos = match.end()
        if match.group(3):
            while pos < len(source) and source[pos] in " \t\r\n":
                pos += 1
    parts.append(("text", source[pos:]))
    if "{{" in "".join(t for k, t in parts if k == "text"):
        raise TemplateError("unterminated action '{{'")
    return parts


class Template:
    def __init__(self, source: str, name: str) -> None:
        self.name = name
        self.defines: dict[str, list[Node]] = {}
        self._parts = _split(source)
        self._pos = 0
        self.body, end = self._parse_block(top=True)
        if end is not None:
            raise TemplateError(f"{name}: unexpected {{{{ {end} }}}}")

    def _parse_block(self, top: bool = False) -> tuple[list[Node], str | None]:
        nodes: list[Node] = []
        while self._pos < len(self._parts):
            kind, text = self._parts[self._pos]
            self._pos += 1
            if kind == "text":
                if text:
                    nodes.append(Node("text", text=text))
                continue
            if text.startswith("/*"):
                if not text.endswith("*/"):
                    raise TemplateError(f"{self.name}: unterminated comment")
                continue
            word, _, rest = text.partition(" ")
            rest = rest.strip()
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"{self.name}: unexpected {{{{ {text} }}}}")
                return nodes, text
            if word == "define":
                name = ast.literal_eval(rest)
                body, end = self._parse_block()
                if end != "end":
                    raise TemplateError(f"{self.name}: define {name!r} is not closed")
                self.defines[name] = body
            elif word in ("if", "with"):
                nodes.append(self._parse_conditional(word, rest))
            elif word == "range":
                nodes.append(self._parse_range(rest))
            elif word in ("template", "block", "tpl", "break", "continue"):
                raise TemplateError(f"{self.name}: {{{{ {word} }}}} is outside the supported subset")
            else:
                pipeline, _ = parse_pipeline(tokenize(text))
                nodes.append(Node("action", pipeline=pipeline))
        if not top:
            raise TemplateError(f"{self.name}: missing {{{{ end }}}}")
        return nodes, None

    def _parse_conditional(self, word: str, condition: str) -> Node:
        node = Node(word)
        pipeline, _ = parse_pipeline(tokenize(condition))
        while True:
            body, end = self._parse_block()
            node.branches.append((pipeline, body))
            assert end is not None
            if end == "end":
                return node
            if end == "else":
                node.else_body, end = self._parse_block()
                if end != "end":
                    raise TemplateError(f"{self.name}: {{{{ else }}}} must be followed by {{{{ end }}}}")
                return node
            if word == "if" and end.startswith("else if "):
                pipeline, _ = parse_pipeline(tokenize(end[len("else if ") :]))
                continue
            raise TemplateError(f"{self.name}: unsupported {{{{ {end} }}}}")

    def _parse_range(self, rest: str) -> Node:
        node = Node("range")
        tokens = tokenize(rest)
        if any(t.kind == "declare" for t in tokens):
            index = next(i for i, t in enumerate(tokens) if t.kind == "declare")
            names = [t.text for t in tokens[:index] if not (t.kind == "punct" and t.text == ",")]
            if not 1 <= len(names) <= 2 or any(not n.startswith("$") for n in names):
                raise TemplateError(f"{self.name}: bad range variables {names}")
            node.variables = names
            tokens = tokens[index + 1 :]
        pipeline, _ = parse_pipeline(tokens)
        body, end = self._parse_block()
        node.branches.append((pipeline, body))
        if end == "else":
            node.else_body, end = self._parse_block()
        if end != "end":
            raise TemplateError(f"{self.name}: range is not closed")
        return node


# --------------------------------------------------------------------------- evaluation


class Renderer:
    def __init__(self, templates: dict[str, str]) -> None:
        self.parsed = {name: Template(src, name) for name, src in templates.items()}
        self.defines: dict[str, list[Node]] = {}
        for tpl in self.parsed.values():
            for name, body in tpl.defines.items():
                self.defines[name] = body
        # Helm lets `include` name any template file by its path, e.g. for checksums.
        for name, tpl in self.parsed.items():
            self.defines.setdefault(name, tpl.body)
        self._depth = 0

    def render(self, name: str, context: dict[str, Any]) -> str:
        return self._exec(self.parsed[name].body, context, {"$": context})

    def _exec(self, nodes: list[Node], dot: Any, variables: dict[str, Any]) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(to_str(self._pipeline(node.pipeline, dot, variables)))
            elif node.kind == "if":
                for pipeline, body in node.branches:
                    if truthy(self._pipeline(pipeline, dot, variables)):
                        out.append(self._exec(body, dot, variables))
                        break
                else:
                    out.append(self._exec(node.else_body, dot, variables))
            elif node.kind == "with":
                pipeline, body = node.branches[0]
                value = self._pipeline(pipeline, dot, variables)
                if truthy(value):
                    out.append(self._exec(body, value, variables))
                else:
                    out.append(self._exec(node.else_body, dot, variables))
            elif node.kind == "range":
                pipeline, body = node.branches[0]
                value = self._pipeline(pipeline, dot, variables)
                if isinstance(value, dict):
                    items = [(k, value[k]) for k in sorted(value)]  # Go ranges maps in key order
                elif isinstance(value, list):
                    items = list(enumerate(value))
                elif value is None:
                    items = []
                else:
                    raise TemplateError(f"range over a {type(value).__name__}")
                if not items:
                    out.append(self._exec(node.else_body, dot, variables))
                for key, item in items:
                    scope = dict(variables)
                    if len(node.variables) == 1:
                        scope[node.variables[0]] = item
                    elif len(node.variables) == 2:
                        scope[node.variables[0]], scope[node.variables[1]] = key, item
                    out.append(self._exec(body, item, scope))
        return "".join(out)

    def _pipeline(self, pipeline: Pipeline, dot: Any, variables: dict[str, Any]) -> Any:
        value: Any = None
        for index, command in enumerate(pipeline):
            piped = [value] if index > 0 else []
            value = self._command(command, dot, variables, piped)
        return value

    def _command(self, command: list[Operand], dot: Any, variables: dict[str, Any], piped: list[Any]) -> Any:
        head = command[0]
        if isinstance(head, Token) and head.text in ("and", "or"):
            # Go evaluates and/or lazily: the first falsy (and) or truthy (or) argument wins.
            operands = command[1:]
            if len(operands) + len(piped) < 1:
                raise TemplateError(f"{head.text} needs at least one argument")
            value: Any = None
            thunks = [lambda op=op: self._operand(op, dot, variables) for op in operands]
            thunks += [lambda v=v: v for v in piped]
            for thunk in thunks:
                value = thunk()
                if truthy(value) != (head.text == "and"):
                    return value
            return value
        if isinstance(head, Token) and head.kind == "ident" and head.text not in ("true", "false", "nil"):
            args = [self._operand(op, dot, variables) for op in command[1:]] + piped
            if head.text == "include":
                if len(args) != 2:
                    raise TemplateError("include takes a name and a context")
                return self._include(args[0], args[1])
            fn = FUNCTIONS.get(head.text)
            if fn is None:
                raise TemplateError(f"function {head.text!r} is outside the supported subset")
            try:
                return fn(*args)
            except TemplateError:
                raise
            except Exception as error:  # wrong arity or types, as Go would report at run time
                raise TemplateError(f"error calling {head.text}: {error}") from error
        if len(command) != 1 or piped:
            raise TemplateError("a non-function command cannot take arguments")
        return self._operand(head, dot, variables)

    def _include(self, name: Any, context: Any) -> str:
        body = self.defines.get(name)
        if body is None:
            raise TemplateError(f"include: no template named {name!r}")
        self._depth += 1
        if self._depth > 50:
            raise TemplateError("include recursion too deep")
        try:
            return self._exec(body, context, {"$": context})
        finally:
            self._depth -= 1

    def _operand(self, op: Operand, dot: Any, variables: dict[str, Any]) -> Any:
        if isinstance(op, list):
            return self._pipeline(op, dot, variables)
        tok: Token = op
        if tok.kind == "string":
            return ast.literal_eval(tok.text)
        if tok.kind == "raw":
            return tok.text[1:-1]
        if tok.kind == "number":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text == "nil":
                return None
            fn = FUNCTIONS.get(tok.text)
            if fn is None:
                raise TemplateError(f"function {tok.text!r} is outside the supported subset")
            return fn()
        if tok.kind == "field":
            return self._walk(dot, [p for p in tok.text.split(".") if p], tok.text)
        if tok.kind == "var":
            name, *path = tok.text.split(".")
            if name not in variables:
                raise TemplateError(f"undefined variable {name}")
            return self._walk(variables[name], path, tok.text)
        raise TemplateError(f"unexpected {tok.text!r}")

    @staticmethod
    def _walk(value: Any, path: list[str], text: str) -> Any:
        for index, part in enumerate(path):
            if value is None:
                raise TemplateError(f"nil pointer evaluating {text} at .{part}")
            if not isinstance(value, dict):
                raise TemplateError(f"can't evaluate field {part} in {text}")
            value = value.get(part)
        return value


# --------------------------------------------------------------------------- charts


@dataclass
class RenderedChart:
    files: dict[str, str]  # template path (e.g. "ttc-gateway/templates/deployment.yaml") -> text
    manifests: list[dict[str, Any]]

    def find(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.find(kind)
        if len(found) != 1:
            raise AssertionError(f"expected exactly one {kind}, found {len(found)}")
        return found[0]


def render_chart(
    chart_dir: Path,
    values: dict[str, Any] | None = None,
    release_name: str = "ttc",
    namespace: str = "default",
) -> RenderedChart:
    """Render a chart like `helm template RELEASE CHART_DIR -f values`."""
    chart_meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    base_values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    merged = go_numbers(deep_merge(base_values, values or {}))
    chart_name = chart_meta["name"]
    sources = {
        f"{chart_name}/templates/{p.relative_to(chart_dir / 'templates').as_posix()}": p.read_text()
        for p in sorted((chart_dir / "templates").rglob("*"))
        if p.is_file() and p.suffix in (".yaml", ".yml", ".tpl", ".txt")
    }
    renderer = Renderer(sources)
    chart = {k[:1].upper() + k[1:]: v for k, v in chart_meta.items()}
    files: dict[str, str] = {}
    manifests: list[dict[str, Any]] = []
    for name in sources:
        base = name.rsplit("/", 1)[-1]
        if base.startswith("_") or base == "NOTES.txt":
            continue
        context = {
            "Values": merged,
            "Chart": chart,
            "Release": {"Name": release_name, "Namespace": namespace, "Service": "Helm", "IsInstall": True,
                        "IsUpgrade": False, "Revision": 1},
            "Capabilities": {"KubeVersion": {"Version": "v1.31.0"}},
            "Template": {"Name": name, "BasePath": f"{chart_name}/templates"},
        }
        text = renderer.render(name, context)
        files[name] = text
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise TemplateError(f"{name} does not render to valid YAML: {error}\n---\n{text}") from error
        manifests.extend(d for d in docs if d)
    return RenderedChart(files, manifests)
