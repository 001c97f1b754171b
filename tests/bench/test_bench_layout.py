"""bench/ and testkit/ layout rules, checked on the source (cheap: AST, plus three `--help` runs).

- bench/ and testkit/ run as packages from the repository root (`python -m bench.gateway.compare`),
  so nothing in them edits `sys.path`;
- shared testing support lives in testkit/: bench never imports tests, tests never import bench
  (except tests/bench, whose subject is the bench code), testkit imports neither;
- live bench code never imports bench.archive;
- every bench script with a `__main__` block sits in a package, and every `from bench... import x`
  names a module and a top-level name that exist.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
TESTKIT = REPO / "testkit"
TESTS = REPO / "tests"
# The cheapest scripts to start (no torch, no sklearn at import): a real `python -m ... --help` each.
CHEAP_MAINS = ("bench.gateway.compare", "bench.gateway.load", "bench.gateway.ledger")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every absolute import anywhere in the file, lazy ones included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def imports_package(path: Path, package: str) -> list[str]:
    return [module for module, _ in imports(path) if module == package or module.startswith(package + ".")]


def touches_sys_path(path: Path) -> bool:
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            return True
    return False


def has_main_block(path: Path) -> bool:
    for node in tree(path).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name) \
                and node.test.left.id == "__name__":
            return True
    return False


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in tree(path).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_the_layout_exists() -> None:
    # Guards the other tests against passing on an empty glob.
    assert (BENCH / "gateway" / "compare.py").exists() and (TESTKIT / "fake_upstream.py").exists()
    assert len(sources(BENCH)) > 10


@pytest.mark.parametrize("root", [BENCH, TESTKIT], ids=["bench", "testkit"])
def test_no_sys_path_edits(root: Path) -> None:
    wrong = [str(p.relative_to(REPO)) for p in sources(root) if touches_sys_path(p)]
    assert not wrong, f"run these as `python -m ...` from the repository root instead of editing sys.path: {wrong}"


def test_bench_never_imports_tests() -> None:
    wrong = {str(p.relative_to(REPO)): imports_package(p, "tests") for p in sources(BENCH) if imports_package(p, "tests")}
    assert not wrong, f"shared helpers belong in testkit/: {wrong}"


def test_testkit_imports_neither_tests_nor_bench() -> None:
    wrong = {str(p.relative_to(REPO)): imports_package(p, "tests") + imports_package(p, "bench")
             for p in sources(TESTKIT) if imports_package(p, "tests") + imports_package(p, "bench")}
    assert not wrong, wrong


def test_only_tests_of_the_bench_import_bench() -> None:
    wrong = {str(p.relative_to(REPO)): imports_package(p, "bench")
             for p in sources(TESTS) if "bench" not in p.relative_to(TESTS).parts[:1] and imports_package(p, "bench")}
    assert not wrong, f"tests share helpers with the bench through testkit/, not bench/: {wrong}"


def test_live_bench_code_never_imports_the_archive() -> None:
    live = [p for p in sources(BENCH) if "archive" not in p.relative_to(BENCH).parts[:1]]
    wrong = {str(p.relative_to(REPO)): imports_package(p, "bench.archive") for p in live if imports_package(p, "bench.archive")}
    assert not wrong, f"move shared helpers into a live module (e.g. bench/router/splits.py): {wrong}"


def test_scripts_are_modules_of_packages() -> None:
    mains = [p for p in sources(BENCH) + sources(TESTKIT) if has_main_block(p)]
    assert mains
    not_in_package = [str(p.relative_to(REPO)) for p in mains
                      if any(not (REPO / d / "__init__.py").exists() for d in p.relative_to(REPO).parents if d != Path("."))]
    assert not not_in_package, f"`python -m` needs an __init__.py in every folder above: {not_in_package}"


def test_bench_and_testkit_imports_resolve() -> None:
    """Every `import bench...`/`testkit...` names an existing module, and every imported name is defined there."""
    missing: list[str] = []
    for path in sources(BENCH) + sources(TESTKIT) + sources(TESTS):
        for module, names in imports(path):
            if module.split(".")[0] not in ("bench", "testkit"):
                continue
            target = module_file(module)
            if target is None:
                missing.append(f"{module_name(path)}: no module {module}")
                continue
            defined = top_level_names(target)
            missing += [f"{module_name(path)}: {module} has no {name}" for name in names
                        if name not in defined and module_file(f"{module}.{name}") is None]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module", CHEAP_MAINS)
def test_cheap_scripts_start_as_modules(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
