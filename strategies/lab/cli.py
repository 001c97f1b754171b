"""`ttc strategies ...` (also `python -m strategies ...`).

    python -m strategies convert --out /tmp/math_cot_100.replay.jsonl
    python -m strategies eval --replay /tmp/math_cot_100.replay.jsonl --strategy adaptive --seeds 20 --json out.json
    python -m strategies fit-policy --replay FILE --out policy.json

`eval --live` and `record` need real models. The app is built by
:func:`make_app` around a :class:`LabBackend`, the one thing the lab needs from
the gateway: a `Generator` over a gateway config's models. The gateway passes
its own (`gateway/commands/strategies.py`); `python -m strategies` passes
:class:`NoLiveModels`, so those two commands say they need the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Protocol

import typer

from contracts.outcomes import OutcomeFileError, iter_outcomes

from ..base import Generator
from ..policy import StoppingPolicy, load_policy
from ..spec import TTCSpec
from .evaluation import EvalResult, PolicyFor, cross_fit, evaluate, to_policy_problem
from .fit_policy import fit_policy
from .replay import ReplayProblem, load_replay

DEFAULT_MATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "math_samples" / "math_cot_100.jsonl"


# `--config` (None: not given) to a Generator, through the app's backend.
LiveGenerator = Callable[[Path | None], Generator]


class LabBackend(Protocol):
    """What the lab needs from the gateway."""

    def generator(self, config: Path) -> Generator:
        """A Generator over the models of the gateway config at `config` (called directly: no tenant, no ledger)."""
        ...


class NoLiveModels:
    """The backend without a gateway (`python -m strategies`): live commands refuse, with a pointer."""

    def generator(self, config: Path) -> Generator:
        raise typer.BadParameter("live mode needs the gateway's upstream layer: run it as `ttc strategies ...`")


def make_app(backend: LabBackend) -> typer.Typer:
    """The `ttc strategies` app; `backend` serves `eval --live` and `record`."""
    app = typer.Typer(help="Test-time-compute strategies: replay evaluation, recording, conversion.",
                      no_args_is_help=True)

    def live_generator(config: Path | None) -> Generator:
        if config is None:
            raise typer.BadParameter("--live needs --config")
        return backend.generator(config)

    app.command("eval")(_eval_command(live_generator))
    app.command("convert")(convert_cmd)
    app.command("fit-policy")(fit_policy_cmd)
    app.command("fit-escalation")(fit_escalation_cmd)
    app.command("record")(_record_command(live_generator))
    return app


def _row(r: EvalResult) -> str:
    return f"{r.label:<22} acc={r.accuracy:.4f}  tokens={r.mean_completion_tokens:9.1f}  calls={r.mean_calls:5.2f}"


def _eval_command(live_generator: LiveGenerator) -> Callable[..., None]:
    """`eval`, its live mode served by `live_generator`."""

    def eval_cmd(
        replay: Optional[Path] = typer.Option(None, help="Replay JSONL file."),
        strategy: str = typer.Option("adaptive", help="single|best_of_n|refine|scale|adaptive"),
        n: Optional[int] = typer.Option(None, help="N for best_of_n; the most adaptive may draw."),
        selector: str = typer.Option("majority", help="majority|judge|reward|verifier"),
        seeds: int = typer.Option(20, help="Runs seeds 0..K-1."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the summary JSON here."),
        policy: Optional[Path] = typer.Option(None, help="Stopping-policy JSON for adaptive."),
        cross_fit_folds: int = typer.Option(0, "--cross-fit", help="Fit adaptive's policy out-of-fold with K folds."),
        objective: str = typer.Option("agreement", help="Policy objective for --cross-fit: agreement|gain|flip|auto."),
        rel_tolerance: Optional[float] = typer.Option(
            None, help="--cross-fit: cheapest threshold keeping (1 - this) of always drawing N (inner CV)."),
        state: str = typer.Option("vote", help="--cross-fit: policy state, vote|vote+distinct (auto: chosen by inner CV)."),
        difficulty_bins: int = typer.Option(
            0, help="--cross-fit: split the policy by a prompt-only difficulty model fitted per fold (bins; 0: off)."),
        curve: bool = typer.Option(True, help="Also print the accuracy-vs-tokens curve."),
        live: bool = typer.Option(False, help="Run on real models (needs the gateway)."),
        config: Optional[Path] = typer.Option(None, help="Gateway config (live)."),
        prompts: Optional[Path] = typer.Option(None, help="Prompts JSONL (live)."),
        limit: Optional[int] = typer.Option(None, help="Use the first N prompts/problems."),
        offset: int = typer.Option(0, help="Live: skip the first N prompts."),
        max_tokens: Optional[int] = typer.Option(None, help="Live: completion cap per call."),
        temperature: Optional[float] = typer.Option(None, help="Live: sampling temperature."),
        template: Optional[str] = typer.Option(None, help="Live: wrap each prompt, a format string with {question}."),
        extractor: str = typer.Option("auto", help="Answer extractor (live grading and voting)."),
        spec_set: Optional[list[str]] = typer.Option(
            None, "--set", help="Extra strategy spec field, KEY=VALUE (JSON value), e.g. rounds=1, critique_max_tokens=64."),
        shots: Optional[Path] = typer.Option(None, help="Live: few-shot JSONL ({question, answer}) as earlier chat turns."),
        stop: Optional[list[str]] = typer.Option(None, help="Live: stop string (repeatable)."),
    ) -> None:
        """Evaluate a strategy on a replay file (or live)."""
        try:
            extra = {}
            for item in spec_set or []:
                key, sep, raw = item.partition("=")
                if not sep:
                    raise ValueError(f"--set {item!r}: expected KEY=VALUE")
                try:
                    extra[key.strip()] = json.loads(raw)
                except json.JSONDecodeError:
                    extra[key.strip()] = raw
            spec = TTCSpec(strategy=strategy, n=n, selector=selector, extractor=extractor, **extra)  # type: ignore[arg-type]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if strategy == "cascade":
            # Replay files hold one model's samples, and live eval has no escalation model to load.
            raise typer.BadParameter("cascade is evaluated on recorded answers of two models by python -m bench.router.cascade, "
                                     "and served by the gateway (strategies.escalation)")
        if live:
            from .live import evaluate_live, load_prompts, load_shots

            if prompts is None:
                raise typer.BadParameter("--live needs --prompts")
            gen = live_generator(config)
            live_policy = load_policy(policy) if policy is not None and strategy == "adaptive" else None
            items = load_prompts(prompts, None if limit is None else offset + limit, template)[offset:]
            result = asyncio.run(evaluate_live(gen, items, spec, policy=live_policy,
                                               params=_sampling(max_tokens, temperature, None, stop) or None,
                                               shots=load_shots(shots) if shots else None))
            typer.echo(_row(result))
            _write_json(json_out, result)
            return
        if replay is None:
            raise typer.BadParameter("--replay FILE is required without --live")
        if strategy in ("refine", "scale"):
            raise typer.BadParameter(f"{strategy} makes judge/critique calls that replay files do not hold: use --live")
        if selector == "judge":
            raise typer.BadParameter("the judge selector calls a model: use --live")
        problems = load_replay(replay)[:limit]
        max_n = min(len(p.samples) for p in problems)
        policy_for = _policy_for(problems, policy, cross_fit_folds, objective, n or max_n, rel_tolerance, state,
                                 difficulty_bins)
        result = evaluate(problems, spec, seeds, policy_for=policy_for if strategy == "adaptive" else None)
        typer.echo(_row(result))
        _write_json(json_out, result)
        if curve:
            typer.echo("\naccuracy vs mean completion tokens (majority voting):")
            for k in range(1, max_n + 1):
                s = TTCSpec(strategy="best_of_n", n=k, selector="majority")
                r = evaluate(problems, s, seeds, label="single" if k == 1 else f"best_of_n n={k}")
                typer.echo(_row(r))
            r = evaluate(problems, TTCSpec(strategy="adaptive", n=n or max_n), seeds, policy_for=policy_for,
                         label="adaptive")
            typer.echo(_row(r))

    return eval_cmd


def _policy_for(
    problems: list[ReplayProblem], policy: Path | None, folds: int, objective: str, max_n: int,
    rel_tolerance: float | None = None, state: str = "vote", difficulty_bins: int = 0,
) -> PolicyFor | None:
    if policy is not None and folds:
        raise typer.BadParameter("use either --policy or --cross-fit")
    if policy is not None:
        loaded: StoppingPolicy = load_policy(policy)
        return lambda p: loaded
    if folds:
        kwargs: dict = {"rel_tolerance": rel_tolerance} if rel_tolerance is not None else {}
        if difficulty_bins > 1:
            kwargs.update(difficulty=True, difficulty_bins=difficulty_bins)
        if objective == "auto" or state == "auto":
            if rel_tolerance is None:
                raise typer.BadParameter("objective/state 'auto' needs --rel-tolerance")
            kwargs.pop("difficulty_bins", None)  # a candidate field here
            kwargs["candidates"] = [
                {"objective": o, "state": st, "difficulty_bins": difficulty_bins}
                for o in (("agreement", "flip") if objective == "auto" else (objective,))
                for st in (("vote", "vote+distinct") if state == "auto" else (state,))
            ]
        else:
            kwargs.update(objective=objective, state=state)
        lookup, _ = cross_fit(problems, folds=folds, max_n=max_n, **kwargs)
        return lookup
    return None


def _write_json(path: Path | None, result: EvalResult) -> None:
    if path is not None:
        path.write_text(json.dumps(result.summary(), indent=2) + "\n")


def convert_cmd(
    src: Path = typer.Option(DEFAULT_MATH, help="Qwen2.5-Math math_cot_100.jsonl."),
    out: Path = typer.Option(..., help="Replay JSONL to write (outside the repo)."),
    text: bool = typer.Option(True, help="Keep the solution texts."),
) -> None:
    """Convert math_cot_100 to the replay format (tokens: tiktoken cl100k_base)."""
    from .convert import TOKENIZER, convert_file

    count = convert_file(src, out, with_text=text)
    typer.echo(f"wrote {count} problems to {out}; tokens counted with {TOKENIZER}")


def fit_policy_cmd(
    replay: Path = typer.Option(..., help="Replay JSONL to fit on."),
    out: Path = typer.Option(..., help="Policy JSON to write."),
    n: Optional[int] = typer.Option(None, help="Most samples adaptive may draw."),
    objective: str = typer.Option("agreement", help="agreement (label-free) | gain (uses recorded correctness)."),
    tolerance: float = typer.Option(0.005, help="Accuracy the threshold may give up vs drawing all N."),
    rel_tolerance: Optional[float] = typer.Option(None, help="Instead: keep (1 - this) of drawing all N."),
    state: str = typer.Option("vote", help="vote | vote+distinct."),
    first_wave: int = typer.Option(1),
    wave: int = typer.Option(1),
    kind: str = typer.Option("table", help="table | value (weighted votes + stop-vs-one-more; see value_policy.py)."),
    token_budget: float = typer.Option(0.30, help="--kind value: share of drawing all N it may spend (training)."),
) -> None:
    """Fit adaptive's stopping policy on a replay file (the gateway loads it from `strategies.policy`)."""
    problems = load_replay(replay)
    max_n = n or min(len(p.samples) for p in problems)
    if kind == "value":
        from .fit_value_policy import fit_value_policy

        value = fit_value_policy([to_policy_problem(p) for p in problems], max_n=max_n, token_budget=token_budget)
        value.save(out)
        typer.echo(f"lam={value.lam:.3g} cells={len(value.cont_cells)} -> {out}")
        return
    if kind != "table":
        raise typer.BadParameter(f"unknown kind {kind!r}: table | value")
    pol = fit_policy([to_policy_problem(p) for p in problems], max_n=max_n, objective=objective,
                     tolerance=tolerance, rel_tolerance=rel_tolerance, state=state, first_wave=first_wave, wave=wave)
    pol.save(out)
    typer.echo(f"threshold={pol.threshold} cells={len(pol.cells)} -> {out}")


def fit_escalation_cmd(
    data: Path = typer.Option(..., help="Outcome JSONL (`ttc router import` / `collect`) whose rows carry `response`."),
    model: str = typer.Option(..., help="The model that answers first; rows of other models are not read."),
    out: Path = typer.Option(..., help="Escalation model JSON to write (the gateway's `strategies.escalation`)."),
) -> None:
    """Fit `cascade`'s escalation model: P(an answer of MODEL is right), read from the answer itself."""
    from .fit_escalation import fit_escalation

    prompts: list[str] = []
    texts: list[str] = []
    right: list[float] = []
    try:
        for row in iter_outcomes(data):
            if row.model == model and row.response:
                prompts.append(row.prompt)
                texts.append(row.response)
                right.append(row.score)
    except (OSError, OutcomeFileError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if not prompts:
        raise typer.BadParameter(f"no rows of model {model!r} with a `response` in {data}")
    try:
        fitted = fit_escalation(prompts, texts, right, model=model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    fitted.save(out)
    cv = fitted.cv
    typer.echo(f"{int(cv['n'])} answers, {cv['base_rate']:.1%} right; out-of-fold AUC {cv['auc']:.3f}, "
               f"log-loss {cv['log_loss']:.3f} -> {out}")


def _sampling(max_tokens: int | None, temperature: float | None, top_p: float | None,
              stop: list[str] | None = None) -> dict:
    out: dict = {}
    if stop:
        out["stop"] = [s.encode().decode("unicode_escape") for s in stop]  # a literal backslash-n on the command line
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if temperature is not None:
        out["temperature"] = temperature
    if top_p is not None:
        out["top_p"] = top_p
    return out


def _record_command(live_generator: LiveGenerator) -> Callable[..., None]:
    """`record`, on models from `live_generator`."""

    def record_cmd(
        config: Path = typer.Option(..., help="Gateway config."),
        prompts: Path = typer.Option(..., help="Prompts JSONL."),
        samples: int = typer.Option(16, help="Samples per prompt."),
        out: Path = typer.Option(..., help="Replay JSONL to write (appended problem by problem)."),
        model: Optional[str] = typer.Option(None, help="Model to sample (default: the config's)."),
        limit: Optional[int] = typer.Option(None),
        max_tokens: Optional[int] = typer.Option(None, help="Completion cap per sample."),
        temperature: Optional[float] = typer.Option(None, help="Sampling temperature (default 0.7)."),
        top_p: Optional[float] = typer.Option(None),
        stop: Optional[list[str]] = typer.Option(None, help="Stop string (repeatable; backslash escapes understood)."),
        system: Optional[str] = typer.Option(None, help="System message for every prompt."),
        shots: Optional[Path] = typer.Option(None, help="Few-shot JSONL ({question, answer}) sent as earlier chat turns."),
        template: Optional[str] = typer.Option(None, help="Wrap each prompt: a format string with {question}."),
        extractor: str = typer.Option("auto", help="Answer extractor for the recorded `answer` fields."),
        resume: bool = typer.Option(False, help="Keep problems already in --out and record only the rest."),
    ) -> None:
        """Record a replay file from live models."""
        import sys
        import time

        from ..extractors import extractor_names
        from .live import load_prompts, load_shots, record

        if extractor not in extractor_names():
            raise typer.BadParameter(f"unknown extractor {extractor!r}; known: {extractor_names()}")
        gen = live_generator(config)
        started = time.monotonic()
        tokens = [0]

        def progress(count: int, problem: ReplayProblem) -> None:
            tokens[0] += sum(s.completion_tokens for s in problem.samples)
            acc = sum(bool(s.correct) for s in problem.samples) / len(problem.samples)
            elapsed = time.monotonic() - started
            print(f"[{count}] id={problem.id} acc={acc:.2f} elapsed={elapsed:.0f}s "
                  f"tok/s={tokens[0] / max(elapsed, 1e-9):.1f}", file=sys.stderr, flush=True)

        count = asyncio.run(record(
            gen, load_prompts(prompts, limit, template), samples, out, model=model, extractor=extractor,
            params=_sampling(max_tokens, temperature, top_p, stop), system=system,
            shots=load_shots(shots) if shots else None, resume=resume, progress=progress,
        ))
        typer.echo(f"recorded {count} problems x {samples} samples to {out}")

    return record_cmd
