import json
import re
from pathlib import Path

from typer.testing import CliRunner

from strategies.lab.cli import NoLiveModels, make_app
from strategies.policy import load_policy

RUNNER = CliRunner()
app = make_app(NoLiveModels())


def write_replay(path: Path) -> None:
    rows = []
    for pid in range(6):
        samples = [{"answer": "7" if (j + pid) % 3 else "8", "correct": bool((j + pid) % 3), "prompt_tokens": 4,
                    "completion_tokens": 10 + j, "score": 0.5} for j in range(4)]
        rows.append({"id": pid, "prompt": f"problem {pid}", "gold": "7", "samples": samples})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_eval_writes_exactly_the_documented_keys(tmp_path: Path) -> None:
    replay, out = tmp_path / "r.jsonl", tmp_path / "out.json"
    write_replay(replay)
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "best_of_n", "--n", "3", "--seeds", "4",
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {"strategy", "accuracy", "mean_completion_tokens", "mean_calls", "seeds"}
    assert data["strategy"] == "best_of_n" and data["seeds"] == 4 and data["mean_calls"] == 3.0
    assert 0.0 <= data["accuracy"] <= 1.0
    # the accuracy-vs-tokens curve: single, best_of_n n=2..max, adaptive
    assert "single" in res.output and "best_of_n n=4" in res.output and "adaptive" in res.output


def test_eval_adaptive_cross_fit_and_verifier(tmp_path: Path) -> None:
    replay, out = tmp_path / "r.jsonl", tmp_path / "out.json"
    write_replay(replay)
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "adaptive", "--seeds", "2",
                              "--cross-fit", "2", "--no-curve", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["strategy"] == "adaptive"
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "best_of_n", "--n", "4",
                              "--selector", "verifier", "--seeds", "2", "--no-curve", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["accuracy"] == 1.0  # every problem has a correct sample


def test_eval_refuses_refine_on_replay_and_bad_strategy(tmp_path: Path) -> None:
    replay = tmp_path / "r.jsonl"
    write_replay(replay)
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "refine"])
    assert res.exit_code != 0 and "live" in res.output
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "magic"])
    assert res.exit_code != 0


def test_fit_policy_command(tmp_path: Path) -> None:
    replay, out = tmp_path / "r.jsonl", tmp_path / "pol.json"
    write_replay(replay)
    res = RUNNER.invoke(app, ["fit-policy", "--replay", str(replay), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["kind"] == "table"
    res = RUNNER.invoke(app, ["fit-policy", "--replay", str(replay), "--out", str(out), "--kind", "value"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["kind"] == "value"
    assert type(load_policy(out)).__name__ == "ValuePolicy"  # what the gateway loads from strategies.policy


def unboxed(output: str) -> str:
    """Typer's error box wraps long messages anywhere: compare without whitespace and box drawing."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", output)


def test_fit_escalation_reads_outcome_rows_and_refuses_bad_input(tmp_path: Path) -> None:
    from strategies.escalation import EscalationModel

    rows = [{"prompt": f"Tom has {i} apples and buys 4 more. How many?", "model": "small",
             "response": f"{i} + 4 = {i + 4}\n#### {i + 4}" if i % 2 else f"{i} * 4 = 1\n#### 1", "score": float(i % 2)}
            for i in range(40)]
    rows += [{"prompt": "other", "model": "big", "response": "#### 1", "score": 1.0},  # another model: not read
             {"prompt": "no answer kept", "model": "small", "score": 0.0}]  # no response: not read
    data, out = tmp_path / "rows.jsonl", tmp_path / "e.json"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = RUNNER.invoke(app, ["fit-escalation", "--data", str(data), "--model", "small", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "40 answers, 50.0% right" in res.output
    model = EscalationModel.load(out)
    assert model.model == "small" and model.cv["n"] == 40
    assert model.p_right("Tom has 3 apples and buys 4 more. How many?", "3 + 4 = 7\n#### 7") > 0.5

    res = RUNNER.invoke(app, ["fit-escalation", "--data", str(data), "--model", "nobody", "--out", str(out)])
    assert res.exit_code == 2 and "norowsofmodel'nobody'" in unboxed(res.output)
    data.write_text('{"prompt": "x", "model": "small"\n')
    res = RUNNER.invoke(app, ["fit-escalation", "--data", str(data), "--model", "small", "--out", str(out)])
    assert res.exit_code == 2 and "rows.jsonl:1:notanoutcomerow" in unboxed(res.output)


def test_eval_refuses_cascade_with_a_pointer(tmp_path: Path) -> None:
    replay = tmp_path / "r.jsonl"
    write_replay(replay)
    res = RUNNER.invoke(app, ["eval", "--replay", str(replay), "--strategy", "cascade"])
    assert res.exit_code == 2 and "python-mbench.router.cascade" in unboxed(res.output)
