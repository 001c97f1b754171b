"""`ttc router flywheel` end to end through the CLI: one round labels logged traffic with a
scripted judge, trains a warm-started challenger, compares it and promotes it beside a report."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from router.artifact import read_manifest
from router.lab.cli import make_app
from router.lab.label import CompletionOutcome, parse_pairwise_message
from tests.router.flywheel_support import train_small, two_kind_rows


class TruthJudgedModels:
    """Candidates answer "<model>::<prompt>"; the judge grades by the two-kind truth (cheap solves
    only the easy prompts, dear everything)."""

    chat_models = ("cheap", "dear", "judge")

    def __init__(self, truth: dict[tuple[str, str], float]) -> None:
        self.truth = truth
        self.spent = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        self.spent += 0.001
        if model != "judge":
            return CompletionOutcome(text=f"{model}::{messages[-1]['content']}", prompt_tokens=20, completion_tokens=50,
                                    cost_usd=1e-5 if model == "cheap" else 1e-3)
        pair = parse_pairwise_message(messages[-1]["content"])
        if pair is not None:
            first, second = (self._right(answer) for answer in pair[1:])
            return CompletionOutcome(text="A" if first > second else "B" if second > first else "TIE", prompt_tokens=1,
                                    completion_tokens=1, cost_usd=0.0)
        answer = messages[-1]["content"].split("\n\nAnswer:\n", 1)[1].rsplit("\n\nGrade", 1)[0]
        return CompletionOutcome(text="9" if self._right(answer) else "2", prompt_tokens=1,
                                completion_tokens=1, cost_usd=0.0)

    def _right(self, answer: str) -> bool:
        name, _, prompt = answer.partition("::")
        return self.truth[(prompt, name)] >= 0.5

    async def spent_usd(self) -> float:
        return self.spent

    async def aclose(self) -> None:
        return None


class ScriptedBackend:
    def __init__(self, models: TruthJudgedModels) -> None:
        self.models = models
        self.opened: list[tuple[str, float]] = []

    def open_charged(self, config: Path, tenant: str, budget_usd: float) -> TruthJudgedModels:
        self.opened.append((tenant, budget_usd))
        return self.models

    def stored_feedback(self, config: Path, requests: list[tuple[str, str]]) -> dict[str, float]:
        return {}


def test_one_round_promotes_a_better_router_and_reports_beside_it(tmp_path: Path) -> None:
    report = _one_round(tmp_path, {"feedback": "feedback.jsonl"})
    assert report["label"]["calibration"]["agreement"] == 1.0 and report["judge_weight"] == 1.0


def test_a_pairwise_judged_round_promotes_the_better_router(tmp_path: Path) -> None:
    # "dear" solves every prompt: compared with it, "cheap" ties where it is right and loses where it is not.
    report = _one_round(tmp_path, {"grading": "pairwise", "reference": "dear"})
    assert report["label"]["grading"] == "pairwise" and report["label"]["reference"] == "dear"


def test_a_cross_fitted_round_gates_on_every_labelled_prompt(tmp_path: Path) -> None:
    report = _one_round(tmp_path, {"gate_data": "crossfit", "gate_folds": 3})
    held = report["compare"]["heldout"]
    # No labels reserved for the gate: all 150 labelled prompts train the challenger and are scored.
    assert held["method"] == "crossfit" and held["folds"] == 3 and held["n_prompts"] == 150
    assert report["heldout_rows"] == 300 and report["train_rows"] >= 300 + 40
    rounds = sorted(p for p in (tmp_path / "serving.flywheel").iterdir() if p.is_dir())
    assert sorted(p.name for p in rounds[0].glob("fold-*")) == ["fold-0", "fold-1", "fold-2"]


def test_a_pairwise_flywheel_config_names_its_reference(tmp_path: Path) -> None:
    import pytest
    from pydantic import ValidationError

    from router.lab.flywheel import FlywheelConfig

    with pytest.raises(ValidationError, match="reference"):
        FlywheelConfig(gateway_config=tmp_path, tenant="t", log=tmp_path, artifact=tmp_path, judge="judge",
                       candidates=["cheap", "dear"], budget_usd=1.0, grading="pairwise")


def _one_round(tmp_path: Path, options: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """One flywheel round through the CLI on the two-kind traffic, from a champion trained on inverted
    outcomes; asserts the better challenger was promoted and reported beside the artifact."""
    serving = train_small(two_kind_rows(20, seed=11, inverted=True), tmp_path / "serving")
    champion_version = read_manifest(serving).version
    traffic = two_kind_rows(150, seed=12)
    truth = {(r.prompt, r.model): r.score for r in traffic}
    with (tmp_path / "log.jsonl").open("w") as handle:
        for i, row in enumerate(r for r in traffic if r.model == "dear"):
            handle.write(json.dumps({"request_id": f"q{i}", "tenant": "t", "served_model": "dear", "status": "ok",
                                     "propensity": 0.95, "prompt_tokens": 20, "completion_tokens": 50, "cost_usd": 1e-3,
                                     "messages": [{"role": "user", "content": row.prompt}],
                                     "response_text": f"dear::{row.prompt}"}) + "\n")
    # Users confirm the served answers: ground truth for the judge's calibration.
    (tmp_path / "feedback.jsonl").write_text("".join(json.dumps({"request_id": f"q{i}", "score": 1.0}) + "\n" for i in range(60)))
    (tmp_path / "flywheel.yaml").write_text(yaml.safe_dump({
        "gateway_config": "gateway.yaml", "tenant": "labeler", "log": "log.jsonl", "artifact": "serving",
        "judge": "judge", "candidates": ["cheap", "dear"], "sample": 150, "budget_usd": 2.0,
        "n_boot": 300, "rounds": 6, **options}))
    backend = ScriptedBackend(TruthJudgedModels(truth))
    res = CliRunner().invoke(make_app(backend), ["flywheel", "--config", str(tmp_path / "flywheel.yaml")])
    assert res.exit_code == 0, res.output
    assert backend.opened == [("labeler", 2.0)]
    report = json.loads(res.output)
    assert report["compare"]["gate"]["passed"], report["compare"]["gate"]["reason"]
    assert report["promote"]["promoted"]
    assert serving.is_symlink() and read_manifest(serving).version != champion_version
    reports = list((tmp_path / "serving.flywheel").glob("round-*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["promote"]["promoted"]
    return report


def test_flywheel_without_a_gateway_says_where_to_run_it(tmp_path: Path) -> None:
    res = CliRunner().invoke(make_app(), ["flywheel", "--config", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "ttc router flywheel" in res.output


def test_held_out_requests_are_complete_and_never_prompts_the_champion_knows() -> None:
    from contracts.outcomes import OutcomeRow
    from router.lab.flywheel import split_heldout
    from router.lab.outcomes import prompt_key

    rows = []
    for i in range(40):
        for model in ("cheap", "dear") if i % 4 else ("dear",):  # every 4th request judged for one model only
            rows.append(OutcomeRow(prompt=f"p{i % 30}", model=model, score=1.0, id=f"r{i}", source="judge", judge="j"))
    trained = {prompt_key("p1"), prompt_key("p2")}
    train, held = split_heldout(rows, ["cheap", "dear"], 0.5, seed=0, trained=trained)
    held_ids = {r.id for r in held}
    assert held_ids and not held_ids & {r.id for r in train}
    assert len(train) + len(held) == len(rows)
    assert all(int(r.id[1:]) % 4 for r in held)  # complete requests only
    assert not {prompt_key(r.prompt) for r in held} & trained
