"""The chart renderer itself: Helm's Go-template semantics that the chart relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.gotemplate import Renderer, TemplateError, format_float, go_numbers, render_chart, to_yaml


def render(source: str, values: dict | None = None, defines: str = "") -> str:
    renderer = Renderer({"t": source, "_helpers.tpl": defines})
    return renderer.render("t", {"Values": go_numbers(values or {}), "Release": {"Name": "r"}})


def test_trim_markers_remove_whitespace_and_newlines() -> None:
    assert render("a  \n  {{- 1 -}}  \n  b") == "a1b"
    assert render("a {{ 1 }} b") == "a 1 b"


def test_comments_render_nothing() -> None:
    assert render("x{{/* a comment */}}y{{- /* trimmed */ -}} z") == "xyz"


def test_if_else_if_else() -> None:
    tpl = '{{ if eq .Values.m "a" }}A{{ else if eq .Values.m "b" }}B{{ else }}C{{ end }}'
    assert [render(tpl, {"m": m}) for m in ("a", "b", "z")] == ["A", "B", "C"]


def test_go_truthiness() -> None:
    tpl = "{{ if .Values.v }}yes{{ else }}no{{ end }}"
    falsy = [0, "", [], {}, False, None]
    assert [render(tpl, {"v": v}) for v in falsy] == ["no"] * len(falsy)
    assert [render(tpl, {"v": v}) for v in (1, "x", [0], {"a": 1}, True)] == ["yes"] * 5


def test_with_rebinds_dot_and_skips_empty() -> None:
    tpl = "{{ with .Values.a }}[{{ .b }}]{{ end }}"
    assert render(tpl, {"a": {"b": "x"}}) == "[x]"
    assert render(tpl, {"a": {}}) == ""


def test_range_over_map_is_key_ordered_and_over_list() -> None:
    assert render("{{ range $k, $v := .Values.m }}{{ $k }}={{ $v }};{{ end }}", {"m": {"b": 2, "a": 1}}) == "a=1;b=2;"
    assert render("{{ range .Values.l }}<{{ . }}>{{ end }}", {"l": ["x", "y"]}) == "<x><y>"


def test_root_variable_inside_range() -> None:
    assert render("{{ range .Values.l }}{{ $.Release.Name }}{{ end }}", {"l": [1, 2]}) == "rr"


def test_values_numbers_print_like_helm_float64() -> None:
    # Helm's JSON round trip turns every number into float64: big ones print in e-notation.
    assert render("{{ .Values.n }}", {"n": 1000000}) == "1e+06"
    assert render("{{ .Values.n | int }}", {"n": 1000000}) == "1000000"
    assert render("{{ .Values.n }}", {"n": 30}) == "30"
    assert format_float(0.15) == "0.15"


def test_missing_key_renders_empty_but_nil_traversal_fails() -> None:
    assert render("[{{ .Values.missing }}]") == "[]"
    with pytest.raises(TemplateError, match="nil pointer"):
        render("{{ .Values.missing.deeper }}")


def test_pipeline_passes_value_as_last_argument() -> None:
    assert render('{{ .Values.a | default "d" }}', {"a": ""}) == "d"
    assert render('{{ .Values.a | default "d" }}', {"a": "set"}) == "set"
    assert render('{{ "abc-" | trimSuffix "-" | quote }}') == '"abc"'
    assert render('{{ printf "%s-%s" "a" "b" | trunc 2 }}') == "a-"


def test_parenthesised_sub_pipelines_and_lazy_and_or() -> None:
    assert render('{{ if and .Values.x (gt (int .Values.n) 1) }}y{{ end }}', {"x": True, "n": 2}) == "y"
    # `or` stops at the first truthy argument: the nil traversal after it is never evaluated.
    assert render("{{ if or true .Values.nope.deeper }}ok{{ end }}") == "ok"


def test_include_define_and_nindent() -> None:
    defines = '{{- define "lbl" -}}\na: 1\nb: {{ .Values.b }}\n{{- end }}'
    out = render('labels:\n  {{- include "lbl" . | nindent 2 }}', {"b": "x"}, defines)
    assert yaml.safe_load(out) == {"labels": {"a": 1, "b": "x"}}


def test_to_yaml_matches_go_marshalling() -> None:
    assert to_yaml(go_numbers({"b": [1, 2.5], "a": {}})) == "a: {}\nb:\n- 1\n- 2.5"
    assert to_yaml({}) == "{}"


def test_required_and_fail_abort_rendering() -> None:
    with pytest.raises(TemplateError, match="need x"):
        render('{{ required "need x" .Values.x }}')
    with pytest.raises(TemplateError, match="boom"):
        render('{{ fail "boom" }}')


def test_unsupported_syntax_is_rejected_not_guessed() -> None:
    for source in ('{{ tpl "x" . }}', "{{ $x := 1 }}", "{{ if 1 }}", "{{ end }}", "{{ .a }", "{{ nosuchfn 1 }}"):
        with pytest.raises(TemplateError):
            render(source)


def test_render_chart_skips_helpers_and_reports_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("name: x\n")
    (tmp_path / "templates" / "_h.tpl").write_text('{{- define "n" -}}{{ .Values.name }}{{- end }}')
    (tmp_path / "templates" / "cm.yaml").write_text(
        'kind: ConfigMap\nmetadata:\n  name: {{ include "n" . }}-{{ .Chart.AppVersion }}\n'
    )
    chart = render_chart(tmp_path, {"name": "y"})
    assert chart.manifests == [{"kind": "ConfigMap", "metadata": {"name": "y-1"}}]
    (tmp_path / "templates" / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(TemplateError, match="valid YAML"):
        render_chart(tmp_path)
