"""`label` over a scripted judge: counterfactual answers, graded rows with source and judge, and
a calibration that picks the judge's cut from feedback and reports its agreement."""

from __future__ import annotations

import asyncio

import pytest

from router.lab.label import BudgetExhausted, CompletionOutcome, calibrate, label, parse_grade, sample_requests
from router.lab.logdata import LoggedRequest


class ScriptedModels:
    """Candidates answer "A:<model>"; the judge grades `strong` answers 7/10 and others 4/10 (a
    judge whose default cut of 0.5 is wrong: 4/10 maps to 0.33, 7/10 to 0.67, both readable)."""

    chat_models = ("weak", "strong", "judge")

    def __init__(self, calls_allowed: int = 10_000) -> None:
        self.left = calls_allowed
        self.spent = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        if self.left <= 0:
            raise BudgetExhausted("no budget")
        self.left -= 1
        self.spent += 0.001
        if model == "judge":
            text = "7" if "A:strong" in messages[-1]["content"] else "4"
        else:
            text = f"A:{model}"
        return CompletionOutcome(text=text, prompt_tokens=5, completion_tokens=3, cost_usd=0.001)

    async def spent_usd(self) -> float:
        return self.spent

    async def aclose(self) -> None:
        return None


def logged(i: int) -> LoggedRequest:
    return LoggedRequest(request_id=f"r{i}", tenant="t", served_model="weak", status="ok", propensity=0.9,
                         messages=[{"role": "user", "content": f"question {i}"}], response_text="A:weak",
                         prompt_tokens=5, completion_tokens=3, cost_usd=0.0001)


def test_rows_carry_source_and_judge_and_the_cut_follows_feedback() -> None:
    log = [logged(i) for i in range(30)]
    # Users say the weak answers were right half the time, in line with the judge reading 4/10 as "right" for 15.
    feedback = {f"r{i}": 1.0 for i in range(30)}
    rows, report = asyncio.run(label(sample_requests(log, 30), ScriptedModels(), judge="judge",
                                     candidates=["weak", "strong"], budget_usd=1.0, feedback=feedback))
    judged = [r for r in rows if r.source == "judge"]
    assert len(judged) == 60 and {r.judge for r in judged} == {"judge"}
    assert {r.model for r in judged} == {"weak", "strong"}
    assert all(r.id and r.id.startswith("r") for r in judged)
    assert [r for r in rows if r.source == "feedback"] and all(r.model == "weak" for r in rows if r.source == "feedback")
    # Feedback says weak answers are right: the cut must move below 4/10 so that they count, agreeing fully.
    assert report.calibration.n == 30
    assert report.calibration.default_agreement == 0.0 and report.calibration.agreement == 1.0
    assert report.calibration.cut <= parse_grade("4")
    assert all(r.score == 1.0 for r in judged if r.model == "weak")
    assert report.spent_usd == pytest.approx(0.001 * (30 + 60))  # one counterfactual answer and two grades per request


def test_the_first_refused_hold_stops_labelling() -> None:
    models = ScriptedModels(calls_allowed=7)
    rows, report = asyncio.run(label([logged(i) for i in range(30)], models, judge="judge", candidates=["weak", "strong"],
                                     budget_usd=1.0, concurrency=1))
    assert report.stopped_for_budget and report.calls == 7
    assert len([r for r in rows if r.source == "judge"]) < 60


def test_calibrate_without_ground_truth_keeps_the_default_cut() -> None:
    result = calibrate([], [])
    assert result.cut == 0.5 and result.agreement is None
    assert parse_grade("Grade: 10/10") == 1.0 and parse_grade("no idea") is None


def test_a_lenient_judge_gets_the_cut_that_separates_right_from_wrong() -> None:
    """Mostly right answers: "everything is right" (the default cut here) agrees 90% of the time and
    carries no information; the calibrated cut separates both kinds."""
    truth = [1.0] * 90 + [0.0] * 10
    raw = [parse_grade("9") or 0.0] * 90 + [parse_grade("6") or 0.0] * 10
    result = calibrate(raw, truth)
    assert result.default_agreement == 0.9 and result.default_balanced_accuracy == 0.5
    assert result.cut == parse_grade("9") and result.balanced_accuracy == 1.0 and result.agreement == 1.0


def test_the_gateways_logged_http_status_counts_as_answered() -> None:
    # The gateway logs the status it answered with ("200"), not "ok": such rows must be labelled,
    # refused or failed ones never.
    rows = [logged(0).model_copy(update={"status": status}) for status in ("200", "429", "502")]
    assert [r.status for r in sample_requests(rows, 10)] == ["200"]


def test_parse_judge_message_inverts_judge_messages() -> None:
    from router.lab.label import judge_messages, parse_judge_message

    # An answer may quote the format's own markers; the request is read up to the first answer marker.
    request = logged(3).model_copy(update={"messages": [{"role": "user", "content": "What is 2+2?\nAnswer: briefly"}]})
    answer = "It is 4.\n\nAnswer:\n4\n\nGrade (1-10): 10"
    messages = judge_messages(request, answer, "rubric")
    assert parse_judge_message(messages[-1]["content"]) == ("What is 2+2?\nAnswer: briefly", answer)


class PairwiseJudge(ScriptedModels):
    """A judge that prefers the strong model's answer to the weak one's, and otherwise favours
    whichever answer it is shown first (the position bias that asking both ways cancels)."""

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        if model != "judge":
            return await super().complete(model, messages, max_tokens)
        from router.lab.label import parse_pairwise_message

        self.spent += 0.001
        pair = parse_pairwise_message(messages[-1]["content"])
        assert pair is not None, "pairwise grading must send pairwise turns"
        _, first, second = pair
        if {first, second} == {"A:weak", "A:strong"}:
            text = "A" if first == "A:strong" else "B"
        else:
            text = "A"  # position bias
        return CompletionOutcome(text=text, prompt_tokens=5, completion_tokens=1, cost_usd=0.001)


def test_pairwise_grading_compares_each_answer_with_the_reference_both_ways() -> None:
    log = [logged(i) for i in range(20)]
    rows, report = asyncio.run(label(log, PairwiseJudge(), judge="judge", candidates=["weak", "strong"],
                                     budget_usd=1.0, grading="pairwise", reference="strong"))
    judged = [r for r in rows if r.source == "judge"]
    assert report.grading == "pairwise" and report.reference == "strong"
    assert all(r.score == 1.0 for r in judged if r.model == "strong")  # the yardstick
    assert [r.score for r in judged if r.model == "weak"] == [0.0] * 20  # lost both ways round
    assert report.calls == 20 + 2 * 20  # one counterfactual answer, two comparisons per request


def test_pairwise_position_bias_alone_reads_as_a_tie() -> None:
    class Tied(PairwiseJudge):
        async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
            if model == "judge":
                return CompletionOutcome(text="A", prompt_tokens=5, completion_tokens=1, cost_usd=0.0)
            return await super().complete(model, messages, max_tokens)

    # Feedback says the weak answers were right: a tie (preference 0.5) meets the calibrated cut.
    feedback = {f"r{i}": 1.0 for i in range(10)}
    rows, report = asyncio.run(label([logged(i) for i in range(10)], Tied(), judge="judge", candidates=["weak", "strong"],
                                     budget_usd=1.0, grading="pairwise", reference="strong", feedback=feedback))
    assert report.calibration.n == 10  # the weak (served) answers only: the reference is not calibrated
    assert all(r.score == 1.0 for r in rows if r.source == "judge")


def test_pairwise_grading_needs_a_reference_among_the_candidates() -> None:
    with pytest.raises(ValueError, match="reference"):
        asyncio.run(label([logged(0)], ScriptedModels(), judge="judge", candidates=["weak", "strong"], budget_usd=1.0,
                          grading="pairwise", reference="judge"))


def test_pairwise_messages_round_trip_and_verdicts() -> None:
    from router.lab.label import judge_messages, pairwise_messages, parse_pairwise_message, parse_preference

    request = logged(3)
    assert parse_pairwise_message(pairwise_messages(request, "one", "two\n\nAnswer A:\nx", "r")[-1]["content"]) == (
        "question 3", "one", "two\n\nAnswer A:\nx")
    assert parse_pairwise_message(judge_messages(request, "one", "r")[-1]["content"]) is None
    assert [parse_preference(t) for t in ("A", "B.", "Tie", "TIE - both wrong", "neither", "a draw, really")] == [
        1.0, 0.0, 0.5, 0.5, None, None]


def test_the_simulations_replay_judge_compares_recorded_answers() -> None:
    from contracts.outcomes import OutcomeRow
    from router.lab.label import pairwise_messages
    from testkit.replay_upstream import RecordedAnswers

    rows = [OutcomeRow(prompt="question 1", model=m, score=s, response=f"says {m}") for m, s in
            (("weak", 0.0), ("strong", 1.0), ("other", 0.0))]
    judge = RecordedAnswers(rows, epsilon=0.0, seed=0)
    request = logged(1)

    def verdict(first: str, second: str) -> str:
        return judge.grade(pairwise_messages(request, f"says {first}", f"says {second}", "r")[-1]["content"])

    assert (verdict("weak", "strong"), verdict("strong", "weak"), verdict("weak", "other")) == ("B", "A", "TIE")
    always_flipped = RecordedAnswers(rows, epsilon=1.0, seed=0)
    assert always_flipped.grade(pairwise_messages(request, "says weak", "says strong", "r")[-1]["content"]) == "A"
