"""The chart through real Helm (`helm lint`, which renders every template), when available.

Helm is not installable from the registries for Python 3.11 as a CLI; the `helm-sdkpy`
wheel (which embeds the Helm Go library) declares Python >= 3.12. Where it is importable,
this test renders the chart with Helm's own template engine for each values variant, which
cross-checks tests/deploy/gotemplate.py. Elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.gotemplate import deep_merge
from tests.deploy.test_helm import VARIANTS

WARNING = 2  # helm's support.WarningSev; ErrorSev is 3


def lint(chart: Path) -> list[dict[str, Any]]:
    helm = pytest.importorskip("helm_sdkpy", reason="helm-sdkpy (Helm's Go library) is not installed")
    result = asyncio.run(helm.Lint(helm.Configuration()).run(str(chart)))
    return [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= WARNING]


def chart_with_values(chart_dir: Path, tmp_path: Path, values: dict[str, Any]) -> Path:
    target = tmp_path / chart_dir.name
    shutil.copytree(chart_dir, target)
    base = yaml.safe_load((chart_dir / "values.yaml").read_text())
    (target / "values.yaml").write_text(yaml.safe_dump(deep_merge(base, values), sort_keys=False))
    return target


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes(chart_dir: Path, tmp_path: Path, variant: str) -> None:
    errors = lint(chart_with_values(chart_dir, tmp_path, VARIANTS[variant]))
    assert not errors, errors


def test_helm_lint_can_fail(chart_dir: Path, tmp_path: Path) -> None:
    # Lint mode downgrades `fail` and `required` to log lines, so the chart's own value
    # checks are covered by test_helm.py; here a template error must surface.
    chart = chart_with_values(chart_dir, tmp_path, {})
    service = chart / "templates" / "service.yaml"
    service.write_text(service.read_text().replace(".Values.service.type }}", ".Values.service.type | nosuchfn }}"))
    assert lint(chart), "helm lint should report an unknown template function"


def test_helm_enforces_the_values_schema(chart_dir: Path, tmp_path: Path) -> None:
    errors = lint(chart_with_values(chart_dir, tmp_path, {"workers": 0}))
    assert any(e.get("Path") == "values.yaml" for e in errors), errors
