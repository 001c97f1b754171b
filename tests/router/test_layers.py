"""Layering of the router package, read from the source with `ast`.

Serving (everything in router/ outside router/lab/) is what the gateway loads at
request time; the lab (router/lab/) trains, evaluates and collects offline.
Serving must import neither the lab nor the gateway nor strategies; the lab may
import serving, never the gateway.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROUTER = Path(__file__).resolve().parents[2] / "router"
LAB = ROUTER / "lab"
# `python -m router` runs the lab's CLI; nothing imports this entry point, so
# serving code never pulls the lab in through it.
ENTRY_POINTS = {ROUTER / "__main__.py"}


def imported_modules(source: str, package: str) -> list[str]:
    """Absolute module names imported anywhere in `source` (function-level imports too), a module of `package`."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            # `from router import lab` imports router.lab without naming it as the module.
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def violations(source: str, package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [name for name in imported_modules(source, package)
            if any(name == f or name.startswith(f + ".") for f in forbidden)]


def file_violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    package = ".".join(path.relative_to(ROUTER.parent).parent.parts)
    found = violations(path.read_text(encoding="utf-8"), package, forbidden)
    return [f"{path.relative_to(ROUTER.parent)} imports {name}" for name in found]


def serving_modules() -> list[Path]:
    return [p for p in sorted(ROUTER.rglob("*.py")) if LAB not in p.parents and p not in ENTRY_POINTS]


def test_serving_imports_neither_the_lab_nor_gateway_nor_strategies() -> None:
    modules = serving_modules()
    assert ROUTER / "api.py" in modules and ROUTER / "predictors" / "head.py" in modules
    bad = [v for p in modules for v in file_violations(p, ("router.lab", "gateway", "strategies"))]
    assert bad == []


def test_lab_never_imports_gateway() -> None:
    modules = sorted(LAB.rglob("*.py"))
    assert LAB / "train.py" in modules and LAB / "importers" / "base.py" in modules
    bad = [v for p in modules for v in file_violations(p, ("gateway",))]
    assert bad == []


def test_the_checker_catches_each_kind_of_import() -> None:
    # The checker must be able to fail: a serving-shaped module (package router.features) with bad imports.
    source = ("import router.lab.train\nfrom router.lab import metrics\nfrom router import lab\n"
              "def f():\n    from gateway.config import load_config\n    from .. import lab\n    import strategies\n")
    found = violations(source, "router.features", ("router.lab", "gateway", "strategies"))
    assert found == ["router.lab.train", "router.lab", "router.lab.metrics", "router.lab",
                     "gateway.config", "gateway.config.load_config", "router.lab", "strategies"]
    ok = "import numpy\nfrom router.api import load_router\nfrom . import cache\nfrom router import laboratory\n"
    assert violations(ok, "router.features", ("router.lab", "gateway", "strategies")) == []


def test_importing_serving_loads_no_lab_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import router, router.api, sys; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'strategies') or m.startswith('router.lab')))"],
        capture_output=True, text=True, cwd=ROUTER.parent, check=True,
    )
    assert out.stdout.strip() == "[]"
