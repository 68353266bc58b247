"""The evaluation report: ``results.json``, ``report.md`` and PNG plots, written all at once.

``results.json`` layout::

    {"<objective>": {"recall@20": {"mean", "std", "values": [per seed]}, ...,
                     "like_dislike_auc": {...}},
     "responsiveness": {"<variant>": {"objective", "relative_change", ...}},
     "config": {...the run: dataset, split, seeds, train config...},
     "summary": {"dislike@20_change", "recall@20_change",  # last objective vs first
                 "like_dislike_auc": {"baseline", "compared"}, "like_dislike_auc_difference"},
     "reference": {"popularity": {...metrics as above},  # most-liked items, same ranking code
                   "ease": {...metrics as above}},  # absent when EASE was skipped
     "ease": {"skipped": null | "<reason>", "lambda": [chosen per seed],
              "grid": [{"lambda", "validation_recall@20": {"mean", "std", "values"}}], ...},
     "serving": {"strengths": {"prior_weight", "dislike_penalty", "penalty_window"},
                 "objectives": {"<objective>": {"served" | "no_prior" | "no_penalty":
                                                {...metrics as above}}},
                 "tradeoff": {"objective", "seed",
                              "prior_weight" | "dislike_penalty" | "penalty_window":
                                  [{"strength", "recall@20", ..., "like_dislike_auc",
                                    "responsiveness" (with --responsiveness)}]}}}

The top-level "<objective>" rows rank with the model alone (both strengths 0); "serving"
holds the same models ranked as served and with each mechanism off (its matched control).

NaN (a metric with nothing to count) is written as null so any JSON parser reads the file.
Files are first written to a staging directory beside ``--out`` and moved in only when all
of them exist: a failing run leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.eval.metrics import AUC

LossHistory = Sequence[Mapping[str, float]]
RESERVED_KEYS = ("responsiveness", "config", "summary", "reference", "ease", "serving")
LOSS_KEYS = ("total", "softmax", "ntr")  # the rest of a FitResult log is bookkeeping
FILES = (
    "results.json",
    "report.md",
    "metrics.png",
    "loss.png",
    "responsiveness.png",
    "tradeoff.png",
)
SERVING_METRICS = ("recall@20", "dislike@20", AUC)  # what the mechanisms trade
SWEPT = ("prior_weight", "dislike_penalty", "penalty_window")  # the trade-off sweeps
RESPONSIVENESS = "responsiveness"  # a sweep row's relative change, with --responsiveness
RUNG_METRICS = ("recall@20", "dislike@20", AUC)  # each responsiveness rung's cost, seed 0
# (results key, label): each variant's strengths and meaning.
VARIANT_LABELS = (
    ("served", "served (both mechanisms)"),
    ("no_prior", "control: prior off"),
    ("no_penalty", "control: penalty off"),
)


def summarize(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Metric → mean, std (sample, 0 for one seed) and the per-seed values."""
    if not per_seed:
        raise ValueError("no seed results to summarise")
    out: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        values = np.array([run[name] for run in per_seed], dtype=np.float64)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if finite.size else math.nan
        std = float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else math.nan)
        out[name] = {"mean": mean, "std": std, "values": [float(v) for v in values]}
    return out


def relative_change(new: float, base: float) -> float:
    """(new − base) / base; NaN when the base is 0 or missing."""
    if not (math.isfinite(new) and math.isfinite(base)) or base == 0:
        return math.nan
    return (new - base) / base


def comparison(objectives: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Dislike@20 and Recall@20 of the last objective relative to the first (the targets), and
    both like-vs-dislike AUCs with their difference (in points: 0.5 is chance, not zero)."""
    names = list(objectives)
    if len(names) < 2:
        return {}
    base, new = objectives[names[0]], objectives[names[-1]]
    out: dict[str, Any] = {"baseline": names[0], "compared": names[-1]}
    for metric in ("dislike@20", "recall@20"):
        if metric in base and metric in new:
            out[f"{metric}_change"] = relative_change(new[metric]["mean"], base[metric]["mean"])
    if AUC in base and AUC in new:
        out[AUC] = {"baseline": base[AUC]["mean"], "compared": new[AUC]["mean"]}
        out[f"{AUC}_difference"] = new[AUC]["mean"] - base[AUC]["mean"]
    return out


def _clean(value: Any) -> Any:
    """NaN/inf → None, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _fmt(value: Any, *, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{100 * value:+.1f} %"
    return f"{value:.4f}"


def _ease_lines(ease: Mapping[str, Any] | None) -> list[str]:
    """The EASE reference: why it is missing, or the λ chosen and the validation grid."""
    if not ease:
        return []
    if ease.get("skipped"):
        return [f"EASE reference skipped: {ease['skipped']}.", ""]
    validation = ease.get("validation", {})
    metric = validation.get("selected_by", "recall@20")
    chosen = ", ".join(f"{lam:g}" for lam in ease.get("lambda") or [])
    share = validation.get("share")
    share_text = f"{100 * share:.0f} %" if isinstance(share, float) else "?"
    lines = [
        f"EASE reference (Steck 2019): λ chosen per seed by {metric} on a validation slice of "
        f"the training half ({validation.get('protocol', '?')}, {share_text} of each user's "
        f"training events), then refitted on the whole training half: λ = {chosen}.",
        "",
    ]
    if ease.get("grid"):
        lines += [f"| λ | validation {metric} |", "|---|---|"]
        for row in ease["grid"]:
            figure = row[f"validation_{metric}"]
            lines.append(f"| {row['lambda']:g} | {_fmt(figure['mean'])} ± {_fmt(figure['std'])} |")
        lines.append("")
    return lines


def _serving_lines(
    serving: Mapping[str, Any] | None, objectives: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Each objective ranked as served next to each mechanism's control, and the sweeps."""
    if not serving or not serving.get("objectives"):
        return []
    strengths = serving["strengths"]
    lines = [
        "## Serving-time dislike mechanisms",
        "",
        f"Ranked by veto.ranking as the service ranks: prior weight "
        f"{strengths['prior_weight']:g}, dislike penalty {strengths['dislike_penalty']:g} "
        f"(window {strengths.get('penalty_window', 0) or 'all dislikes'}); "
        "each control is the same model with only that strength set to 0; 'model only' has both "
        "at 0 (the rows above).",
        "",
        "| objective | ranking | " + " | ".join(SERVING_METRICS) + " |",
        "|---|---|" + "---|" * len(SERVING_METRICS),
    ]
    for objective, variants in serving["objectives"].items():
        rows = [(label, variants[key]) for key, label in VARIANT_LABELS if key in variants]
        if objective in objectives:
            rows.append(("model only", objectives[objective]))
        for label, row in rows:
            cells = [
                f"{_fmt(row[m]['mean'])} ± {_fmt(row[m]['std'])}" if m in row else "–"
                for m in SERVING_METRICS
            ]
            lines.append(f"| {objective} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    tradeoff = serving.get("tradeoff", {})
    sweeps = [(n, tradeoff[n]) for n in SWEPT if tradeoff.get(n)]
    if sweeps:
        columns = list(SERVING_METRICS)
        if any(RESPONSIVENESS in p for _, points in sweeps for p in points):
            columns.append(RESPONSIVENESS)
        lines += [
            f"Trade-off ({tradeoff.get('objective')}, seed {tradeoff.get('seed')}): one "
            "strength swept, the others at their served values (tradeoff.png); responsiveness "
            "from the simulation on the same model, where it was run (the prior does not "
            "depend on the dislike, so it is not simulated).",
            "",
            "| strength | value | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for name, points in sweeps:
            for point in points:
                cells = [
                    _fmt(point.get(m), percent=m == RESPONSIVENESS) if m in point else "–"
                    for m in columns
                ]
                lines.append(f"| {name} | {point['strength']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    """The Markdown report: metric table (mean ± std), comparison, responsiveness."""
    config = results.get("config", {})
    objectives = {k: v for k, v in results.items() if k not in RESERVED_KEYS}
    lines = [
        f"# Offline evaluation: {config.get('dataset', '?')}",
        "",
        f"Split: {config.get('split', '?')} (test share {config.get('test_share', '?')}), "
        f"seeds: {config.get('seeds', '?')}, evaluated users: {config.get('eval_users', '?')}, "
        f"items: {config.get('items', '?')}.",
        "Full ranking over the catalog, the user's training items masked. Dislike@K is the "
        "share of held-out dislikes in the top K (lower is better). like_dislike_auc is, per "
        "user, the share of (held-out like, held-out dislike) pairs scored like above dislike "
        "(ties 1/2, 0.5 = chance), averaged over users with both.",
        "",
    ]
    if objectives:
        metrics = list(next(iter(objectives.values())))
        lines.append("| objective | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        references = {f"{k} (reference)": v for k, v in results.get("reference", {}).items()}
        for name, row in {**objectives, **references}.items():
            # A row without a metric (a reference the metric does not apply to) shows "–".
            cells = [
                f"{_fmt(row[m]['mean'])} ± {_fmt(row[m]['std'])}" if m in row else "–"
                for m in metrics
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _ease_lines(results.get("ease"))
    lines += _serving_lines(results.get("serving"), objectives)
    summary = results.get("summary", {})
    if summary:
        auc = summary.get(AUC)
        auc_text = (
            f", like-vs-dislike AUC {_fmt(auc['compared'])} vs {_fmt(auc['baseline'])}"
            if auc
            else ""
        )
        lines.append(
            f"{summary['compared']} vs {summary['baseline']}: Dislike@20 "
            f"{_fmt(summary.get('dislike@20_change'), percent=True)}, Recall@20 "
            f"{_fmt(summary.get('recall@20_change'), percent=True)}{auc_text}."
        )
        lines.append("")
    sim = results.get("responsiveness", {})
    if sim:
        lines += [
            "## Responsiveness (NTR paper §4 protocol)",
            "",
            "Each rung's cost next to its responsiveness: its test metrics on seed 0, ranked "
            "as the rung ranks.",
            "",
            "| variant | objective | similar share without dislike | with dislike | "
            "relative change | disliked item back in top-K (without / with) | "
            "learned dislike gate (mean) | " + " | ".join(RUNG_METRICS) + " |",
            "|---|---|---|---|---|---|---|" + "---|" * len(RUNG_METRICS),
        ]
        for variant, row in sim.items():
            costs = " | ".join(_fmt(row.get(m)) for m in RUNG_METRICS)
            lines.append(
                f"| {variant} | {row['objective']} | {_fmt(row['similar_share_without'])} | "
                f"{_fmt(row['similar_share_with'])} | "
                f"{_fmt(row['relative_change'], percent=True)} | "
                f"{_fmt(row['return_rate_without'])} / {_fmt(row['return_rate_with'])} | "
                f"{_fmt(row.get('dislike_gate_mean'))} | {costs} |"
            )
        lines.append("")
    return "\n".join(lines)


def _plot_metrics(path: Path, objectives: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(next(iter(objectives.values())))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(metrics) * len(objectives)), 4.0))
    width = 0.8 / len(objectives)
    x = np.arange(len(metrics))
    for i, (name, row) in enumerate(objectives.items()):
        means = [row[m]["mean"] for m in metrics]
        stds = [row[m]["std"] for m in metrics]
        ax.bar(x + i * width, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(x + 0.4 - width / 2, metrics, rotation=45, ha="right")
    ax.set_ylabel("mean over seeds (error bar: std)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_losses(path: Path, histories: Mapping[str, LossHistory]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for name, history in histories.items():
        for key in LOSS_KEYS:
            points = [(i + 1, step[key]) for i, step in enumerate(history) if key in step]
            # An objective without an NTR term logs ntr = 0: not a curve worth drawing.
            if points and any(y != 0 for _, y in points):
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=f"{name}: {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_responsiveness(path: Path, sim: Mapping[str, Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sim)
    changes = [100 * (sim[n]["relative_change"] or 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.bar(names, changes, color="tab:red")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("change of similar share after a dislike (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_tradeoff(path: Path, tradeoff: Mapping[str, Any]) -> None:
    """Recall@20 against Dislike@20, the AUC and responsiveness (where simulated), one line per
    swept mechanism, each point labelled by its strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.5))
    colours = dict(zip(SWEPT, ("tab:blue", "tab:red", "tab:green"), strict=True))
    for ax, metric in zip(axes, ("dislike@20", AUC, RESPONSIVENESS), strict=True):
        for name, colour in colours.items():
            points = [
                p
                for p in tradeoff.get(name, [])
                if _finite(p.get(metric)) and _finite(p.get("recall@20"))
            ]
            if not points:
                continue
            xs = [p[metric] for p in points]
            ys = [p["recall@20"] for p in points]
            ax.plot(xs, ys, marker="o", color=colour, label=name)
            for p, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(f"{p['strength']:g}", (x, y), fontsize=7, color=colour,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(metric)
        ax.set_ylabel("recall@20")
        if ax.lines:  # a metric with nothing to count (NaN AUC, no simulation) draws no line
            ax.legend(fontsize="small")
    fig.suptitle(f"{tradeoff.get('objective', '?')}, seed {tradeoff.get('seed', '?')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def write_report(
    out: Path, results: Mapping[str, Any], *, loss_histories: Mapping[str, LossHistory]
) -> list[Path]:
    """Write every report file into ``out`` (created if missing); returns their paths."""
    objectives = {k: v for k, v in results.items() if k not in RESERVED_KEYS}
    if not objectives:
        raise ValueError("no objective results to report")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        text = json.dumps(_clean(dict(results)), indent=2, allow_nan=False)
        (staging / "results.json").write_text(text + "\n", encoding="utf-8")
        (staging / "report.md").write_text(markdown(results), encoding="utf-8")
        _plot_metrics(staging / "metrics.png", objectives)
        _plot_losses(staging / "loss.png", loss_histories)
        if results.get("responsiveness"):
            _plot_responsiveness(staging / "responsiveness.png", results["responsiveness"])
        tradeoff = results.get("serving", {}).get("tradeoff", {})
        if any(tradeoff.get(name) for name in SWEPT):
            _plot_tradeoff(staging / "tradeoff.png", tradeoff)
        out.mkdir(exist_ok=True)
        written = []
        for name in FILES:
            if (staging / name).exists():
                (staging / name).replace(out / name)
                written.append(out / name)
            else:
                (out / name).unlink(missing_ok=True)  # a stale plot of an earlier run
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
