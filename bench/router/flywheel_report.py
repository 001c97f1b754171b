"""Summarize `bench.router.flywheel` result files into bench/results/router/FLYWHEEL.md.

    python -m bench.router.flywheel_report bench/results/router/FLYWHEEL-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OUT = Path("bench/results/router/FLYWHEEL.md")


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def label_text(value: float | dict | None) -> str:
    """Older result files hold plain accuracy; newer ones accuracy and balanced accuracy."""
    if isinstance(value, dict):
        return f"{value['accuracy']:.3f}/{value['balanced_accuracy']:.3f}"
    return fmt(value)


def gate_label(result: dict) -> str:
    """The gate's metric, and where its held-out scores came from when not a held-out share."""
    crossfit = " crossfit" if result.get("gate_data", "holdout") == "crossfit" else ""
    return f"{result.get('gate_metric', 'aiq')}{crossfit}"


def run_table(results: list[dict]) -> list[str]:
    lines = ["| ε | gate | seed | feedback rows | seed APGR / AIQ | ceiling APGR / AIQ | served APGR per round | promoted rounds | "
             "challenger APGR on test per round | judge labels vs truth per round (accuracy, or accuracy/balanced accuracy) | calibrated cut (balanced acc. vs default) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ref = r["reference"]
        rounds = r["rounds"]
        cal = rounds[0]["calibration"] if rounds and rounds[0].get("calibration") else None
        cal_text = (f"{fmt(cal['cut'], 2)} ({fmt(cal.get('balanced_accuracy'))} vs {fmt(cal.get('default_balanced_accuracy'))}, n={cal['n']})"
                    if cal and cal["n"] else "none (no ground truth)")
        lines.append(
            f"| {r['epsilon']} | {gate_label(r)} | {r['seed']} | {r.get('feedback_rows', 0)} | {fmt(ref['seed']['apgr'])} / {fmt(ref['seed']['aiq'])} | "
            f"{fmt(ref['ceiling']['apgr'])} / {fmt(ref['ceiling']['aiq'])} | "
            f"{', '.join(fmt(x['served']['apgr']) for x in rounds)} | "
            f"{sum(x['promoted'] for x in rounds)} of {len(rounds)} | "
            f"{', '.join(fmt((x.get('challenger_on_test') or {}).get('apgr')) for x in rounds)} | "
            f"{', '.join(label_text(x.get('label_accuracy')) for x in rounds)} | {cal_text} |")
    return lines


def aggregates(results: list[dict]) -> list[str]:
    lines = []
    by_eps: dict[tuple[float, int, str], list[dict]] = {}
    for r in results:
        by_eps.setdefault((r["epsilon"], r.get("feedback_rows", 0), gate_label(r)), []).append(r)
    for (eps, feedback_rows, gate), runs in sorted(by_eps.items()):
        rounds = [x for r in runs for x in r["rounds"]]
        promoted = sum(x["promoted"] for x in rounds)
        worse = sum(bool(x["worse_than_champion"]) for x in rounds)
        final = [r["rounds"][-1]["served"]["apgr"] for r in runs if r["rounds"]]
        ceiling = [r["reference"]["ceiling"]["apgr"] for r in runs]
        last_challenger = [(r["rounds"][-1].get("challenger_on_test") or {}).get("apgr") for r in runs if r["rounds"]]
        last_challenger = [x for x in last_challenger if x is not None]
        seeds = sorted({r["seed"] for r in runs})
        lines.append(f"- ε = {eps}, gate {gate}, {feedback_rows} feedback rows ({len(runs)} runs, seeds {seeds}): {promoted} of {len(rounds)} rounds promoted "
                     f"({promoted / max(len(rounds), 1):.1%}); promoted routers worse than their champion on the test half: {worse}; "
                     f"final served APGR mean {np.mean(final):.3f} vs gold ceiling {np.mean(ceiling):.3f} "
                     f"(target: ≥ ceiling − 0.02 = {np.mean(ceiling) - 0.02:.3f}); last round's challenger (promoted or not) "
                     f"APGR mean {np.mean(last_challenger) if last_challenger else float('nan'):.3f}.")
    return lines


def gate_power_table(rows: list[dict]) -> list[str]:
    lines = ["## Gate power: gold ceiling vs seed router on true-label held-out prompts", "",
             "| seed | held-out prompts | gate metric | AIQ difference [95% CI] | APGR difference [95% CI] | one-sided lower bound | passed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, g = r["aiq_difference"], r["apgr_difference"]
        apgr = f"{g['estimate']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]" if g else "n/a"
        lines.append(f"| {r['seed']} | {r['prompts']} | {r['metric']} | {a['estimate']:+.4f} [{a['low']:+.4f}, {a['high']:+.4f}] | "
                     f"{apgr} | {r['lower_bound']:+.4f} | {r['passed']} |")
    return lines + [""]


def plot(results: list[dict], path: Path) -> None:
    """Per configuration: APGR per round (served and challenger, mean over seeds) and the cost-quality
    operating points (default cost weight) of each round's challenger and of the served router."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict]] = {}
    for r in results:
        key = f"eps={r['epsilon']} gate={gate_label(r)} fb={r.get('feedback_rows', 0)}"
        groups.setdefault(key, []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, (key, runs) in enumerate(sorted(groups.items())):
        color = f"C{i}"
        n = min(len(r["rounds"]) for r in runs)
        xs = [runs[0]["rounds"][k]["requests"] for k in range(n)]
        served = [np.mean([r["rounds"][k]["served"]["apgr"] for r in runs]) for k in range(n)]
        chall = [np.mean([(r["rounds"][k].get("challenger_on_test") or r["rounds"][k]["served"])["apgr"] for r in runs])
                 for k in range(n)]
        axes[0].plot(xs, served, "-o", color=color, label=f"{key}: served")
        axes[0].plot(xs, chall, "--x", color=color, label=f"{key}: challenger")
        axes[0].axhline(np.mean([r["reference"]["ceiling"]["apgr"] for r in runs]), color=color, linestyle=":", linewidth=1)
        for k in range(n):
            pts = [(r["rounds"][k].get("challenger_on_test") or {}) for r in runs]
            axes[1].scatter([q["default_cost_usd"] for q in pts if q], [q["default_quality"] for q in pts if q], color=color,
                            alpha=0.25 + 0.75 * (k + 1) / n, s=14)
        axes[1].scatter([r["rounds"][-1]["served"]["default_cost_usd"] for r in runs],
                        [r["rounds"][-1]["served"]["default_quality"] for r in runs], color=color, marker="s", s=40,
                        edgecolor="black", label=f"{key}: served after the last round")
    ceiling = [r["reference"]["ceiling"] for r in results]
    axes[1].scatter([c["default_cost_usd"] for c in ceiling], [c["default_quality"] for c in ceiling], marker="*", s=120,
                    color="grey", label="gold ceiling")
    axes[0].set(xlabel="requests served (judged)", ylabel="APGR on the test half (mean over seeds)",
                title="SIMULATION: APGR per round (dotted: gold ceiling)")
    axes[1].set(xlabel="mean cost per prompt at the default cost weight, USD", ylabel="quality on the test half",
                title="SIMULATION: each round's challenger (darker = later round)")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    files = [Path(p) for p in sys.argv[1:]]
    results, commands, power = [], [], []
    for path in files:
        payload = json.loads(path.read_text())
        if "rows" in payload:  # bench.router.gate_power
            args = payload["args"]
            power = gate_power_table(payload["rows"])
            commands.append(f"python -m bench.router.gate_power --seeds {' '.join(map(str, args['seeds']))} --sizes "
                            f"{' '.join(map(str, args['sizes']))}   # {payload['date'][:16]} UTC")
            continue
        results += payload["results"]
        args = payload["args"]
        commands.append(f"python -m bench.router.flywheel --epsilon {' '.join(map(str, args['epsilon']))} --seeds "
                        f"{' '.join(map(str, args['seeds']))} --rounds {args['rounds']} --round-size {args['round_size']}"
                        + (" --lenient-judge" if args.get("lenient_judge") else "")
                        + (f" --feedback-rows {' '.join(map(str, args['feedback_rows']))}" if args.get("feedback_rows", [0]) != [0] else "")
                        + (f" --gate-metric {args['gate_metric']}" if args.get("gate_metric", "aiq") != "aiq" else "")
                        + (f" --gate-data {args['gate_data']}" if args.get("gate_data", "holdout") != "holdout" else "")
                        + f" --name {args['name']}   # {payload['date'][:16]} UTC")
    text = ["# Router flywheel: SIMULATION on RouteLLM GSM8K", "",
            "SIMULATION: no real model is called. Candidates answer with their recorded RouteLLM GSM8K responses; the judge "
            "returns the recorded correctness flipped with probability ε (grades 10/1, or 9/6 with `--lenient-judge`, whose "
            "default cut counts every answer right). The served router routes each round's requests (drawn with replacement "
            "from the 553 train-half prompts not in the 100-prompt gold seed; explore_rate 0.05, propensities logged) and "
            "`router.lab.flywheel.run_round` labels, trains, compares (alpha 0.05 over 6 rounds, 1000 paired draws) "
            "and promotes (gate: `--gate-metric`, default AIQ). APGR/AIQ are measured on the fixed test half (654 prompts), never trained on. The gateway's HTTP "
            "path and ledger are not in this loop.", "", "Commands:", "", "```bash", *commands, "```", "", "## Aggregates", "",
            *aggregates(results), "", "![cost-quality per round](FLYWHEEL.png)", "", "## Runs", "", *run_table(results), "",
            *power]
    OUT.write_text("\n".join(text), encoding="utf-8")
    if results:
        plot(results, OUT.with_suffix(".png"))
    print("\n".join(text))


if __name__ == "__main__":
    main()
