"""Markdown table and PNG cost-quality plot for an evaluation result."""

from __future__ import annotations

from pathlib import Path

from router.lab.evaluate import EvalResult
from router.lab.importers import COST_MODEL

_ORDER = ("router", "knn", "logistic", "mlp", "random", "oracle")


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def write_plot(result: EvalResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from router.lab.metrics import nondecreasing_hull

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = {"router": ("C0", 2.2), "knn": ("C1", 1.2), "logistic": ("C2", 1.2), "mlp": ("C4", 1.2),
              "random": ("0.5", 1.0), "oracle": ("k", 0.8)}
    for name in _ORDER:
        curve = result.curves.get(name)
        if curve is None:
            continue
        color, width = styles[name]
        hull = nondecreasing_hull(curve.cost, curve.quality)
        ls = ":" if name == "oracle" else ("--" if name == "random" else "-")
        ax.plot(hull[:, 0], hull[:, 1], ls, color=color, lw=width, label=f"{name} (hull)")
        if name == "router":
            ax.scatter(curve.cost, curve.quality, s=5, color=color, alpha=0.35)
    for model, point in result.singles.items():
        ax.scatter([point["cost"]], [point["quality"]], marker="s", s=30, color="C3", zorder=5)
        ax.annotate(model.split("/")[-1][:28], (point["cost"], point["quality"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(result: EvalResult, title: str, plot_name: str | None) -> str:
    info = result.info
    lines = [f"# {title}", ""]
    lines.append(f"- router version `{info['version']}`, featurizer `{info['featurizer']}`, "
                 f"quality model `{info['quality_model']}`; {info['n_test_prompts']} held-out prompts, "
                 f"none in the training data")
    lines.append(f"- models: {', '.join(f'`{m}`' for m in info['models'])}")
    if info.get("strong"):
        lines.append(f"- APGR/CPT: strong = `{info['strong']}`, weak = `{info['weak']}`"
                     + ("" if info["pgr_defined"] else " (undefined: the dearer model is not better)"))
    base_emb = "the router's own embedding (no text features)" if info.get("baseline_embedder") == "router" else "plain MiniLM embeddings"
    lines.append(f"- baselines use {base_emb}; kNN k={info.get('knn_k')} and logistic C={info.get('logistic_c')} by CV on train only")
    lines.append(f"- cost model: {COST_MODEL}")
    lines += ["", "| method | AIQ | APGR | CPT(50%) | CPT(80%) | cost to match best | quality at cheapest cost |",
              "|---|---|---|---|---|---|---|"]
    rows = {"router": result.router, **result.baselines}
    for name in _ORDER:
        m = rows.get(name)
        if m is None:
            continue
        label = "oracle (ceiling)" if name == "oracle" else ("random mixing" if name == "random" else name)
        lines.append(f"| {label} | {_fmt(m.aiq)} | {_fmt(m.apgr)} | {_fmt(m.cpt50, True)} | {_fmt(m.cpt80, True)} "
                     f"| {_fmt(m.match_best_cost_fraction)} | {_fmt(m.quality_at_cheapest)} |")
    lines += ["", "| single model | quality | mean cost (USD) |", "|---|---|---|"]
    for model, p in sorted(result.singles.items(), key=lambda kv: kv[1]["cost"]):
        star = " (best)" if model == result.best_single.model else ""
        lines.append(f"| `{model}`{star} | {p['quality']:.3f} | {p['cost']:.2e} |")
    if result.calibration:
        lines += ["", "Calibration on the training prompts, applied to the held-out prompts:", ""]
        keys = list(result.calibration[0])
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in result.calibration:
            lines.append("| " + " | ".join(f"{row[k]:.4g}" for k in keys) + " |")
    if plot_name:
        lines += ["", f"![cost-quality]({plot_name})"]
    return "\n".join(lines) + "\n"


def write_report(result: EvalResult, report_path: Path, title: str = "Router evaluation") -> None:
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plot = report_path.with_suffix(".png")
    write_plot(result, plot, title)
    report_path.write_text(markdown(result, title, plot.name), encoding="utf-8")
