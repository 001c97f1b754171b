"""The layout's rules, checked on the source: layers import only downward, nothing imports in
a cycle, and serving modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "strategies", "router", "gateway")
# What each package may import from the others (the layers, lowest first).
ALLOWED = {
    "contracts": set(),
    "strategies": {"contracts"},
    "router": {"contracts"},
    "gateway": {"contracts", "strategies", "router"},
}
MAX_SERVING_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere in its body (lazy imports included)."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


# The `ttc` command is the composition root: it wires the lab commands to the gateway's upstream
# layer at the top, so it may import both.
COMPOSITION_ROOT = ("gateway.cli", "gateway.commands")


def serving(name: str) -> bool:
    if name.startswith(COMPOSITION_ROOT) or name.endswith("__main__"):
        return False
    return ".lab." not in f"{name}." and not name.startswith("bench")


def test_layers_import_only_downward() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        package = name.split(".")[0]
        for target in imported(path, known):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_serving_code_imports_no_lab_code() -> None:
    known = modules()
    wrong = [f"{name} imports {target}" for name, path in known.items() if serving(name)
             for target in imported(path, known) if not serving(target)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imported(path, known) for name, path in known.items()}
    # A package's __init__ re-exporting its submodules is not a cycle with them: edges into a
    # package's own __init__ from inside that package are ignored.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (name.startswith(t + ".") and known[t].name == "__init__.py")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_serving_modules_fit_one_sitting(package: str) -> None:
    long = {name: n for name, path in modules().items()
            if name.split(".")[0] == package and serving(name) and (n := len(path.read_text().splitlines())) > MAX_SERVING_LINES}
    assert not long, f"serving modules over {MAX_SERVING_LINES} lines: {long}"
