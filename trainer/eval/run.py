"""One ``veto eval`` run: per seed, split → train every objective with the trainer's own
``fit`` → rank the full catalog → metrics, next to two references ranked by the same code
(most-liked items, and EASE with λ chosen on the training half); then the responsiveness
simulation on seed 0.

Each trained model is also ranked as served (``veto.ranking``: item prior from the training
half, penalty from the user's training dislikes) and with each mechanism off, the matched
controls; on seed 0 the first objective's strengths are swept one at a time (trade-off curves).

The responsiveness variants (NTR paper §4) are trained on seed 0's training half; a variant
whose objective was also evaluated reuses that very model instead of training it again.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.eval.baselines import popularity_metrics
from trainer.eval.data import EvalData, load_eval_data, split_for_seed
from trainer.eval.ease import (
    LAMBDAS,
    MAX_ITEMS,
    SELECTION_METRIC,
    VALIDATION_SEED,
    VALIDATION_SHARE,
    EaseOutcome,
    evaluate_ease,
)
from trainer.eval.metrics import AUC, Serving, evaluate_model
from trainer.eval.options import EvalOptions
from trainer.eval.report import RESPONSIVENESS, RUNG_METRICS, comparison, summarize
from trainer.eval.responsiveness import Responsiveness, SimConfig, simulate, start_histories
from trainer.eval.similarity import similarity_labels
from trainer.eval.split import Split
from trainer.eval.users import EvalUsers, build_eval_users
from trainer.learn.fit import FitResult, fit
from trainer.learn.prior import ItemFeedback
from veto.events import EventType
from veto.ranking import OFF, Strengths
from veto.settings import TrainerSettings

# (variant name, objective): the paper's ladder.
VARIANTS = (
    ("no dislike signal", "ssm-nodislike"),
    ("dislike feature only", "ssm"),
    ("feature + NTR label", "ssm+ntr"),
)
# Serving variants of each trained model: the served strengths, and each mechanism's matched
# control (the same model, only that strength set to 0).
SERVING_VARIANTS = ("served", "no_prior", "no_penalty")
# The trade-off sweeps: one strength over its grid, the other at its served value.
PRIOR_GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2)
PENALTY_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.5, 1.0)
WINDOW_GRID = (0, 1, 2, 3, 5, 10)
RESPONSIVENESS_GRID = (0.0, 0.1, 0.2, 0.5)  # penalty strengths simulated on the swept model
SWEEPS = (
    ("prior_weight", PRIOR_GRID),
    ("dislike_penalty", PENALTY_GRID),
    ("penalty_window", WINDOW_GRID),
)
# The rung of the ladder ranked as served, and the model whose strengths are swept: the
# deployed objective when it was evaluated.
SERVED_VARIANT = "feature + NTR label, served"
N_CLUSTERS = 20  # k-means clusters standing in for categories where a dataset has none

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class EvalOutcome:
    """The results (the layout of ``results.json``) and seed 0's loss curves per objective."""

    results: dict[str, Any]
    loss_histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)


def _train(
    split: Split, data: EvalData, *, options: EvalOptions, objective: str, seed: int
) -> FitResult:
    config = options.train_config(objective, seed=seed)
    return fit(split.train, item_ids=data.item_ids, config=config, progress=options.progress)


@dataclass(frozen=True)
class _Ranker:
    """One trained model and its evaluated users, ranked under any strengths."""

    model: FitResult
    users: EvalUsers
    prior: npt.NDArray[np.float32]  # (N,) counted on the training half

    def metrics(self, strengths: Strengths) -> dict[str, float]:
        serving = Serving(self.prior, strengths) if strengths != OFF else None
        return evaluate_model(self.model.encoder, self.model.vectors, self.users, serving=serving)


def _ranker(model: FitResult, split: Split, data: EvalData, *, dislike_input: bool) -> _Ranker:
    item_index = {item: i for i, item in enumerate(data.item_ids)}
    users = build_eval_users(
        split.train,
        split.test,
        item_index=item_index,
        history_len=model.encoder.history_len,
        # A model trained without the dislike feature never reads dislikes: nor does its state.
        drop_types=frozenset() if dislike_input else frozenset({EventType.DISLIKE}),
    )
    prior = ItemFeedback.count(split.train, item_index).prior()
    return _Ranker(model=model, users=users, prior=prior)


def _variants(served: Strengths) -> dict[str, Strengths]:
    """The served strengths and each mechanism's matched control."""
    return {
        "served": served,
        "no_prior": replace(served, prior_weight=0.0),
        "no_penalty": replace(served, dislike_penalty=0.0),
    }


def _tradeoff(ranker: _Ranker, served: Strengths) -> dict[str, list[dict[str, float]]]:
    """Each strength over its grid (and its served value), the other at its served value."""
    out: dict[str, list[dict[str, float]]] = {}
    for name, grid in SWEEPS:
        values = sorted({*grid, getattr(served, name)})
        out[name] = [
            {"strength": v, **ranker.metrics(replace(served, **{name: v}))} for v in values
        ]
    return out


def tradeoff_objective(objectives: tuple[str, ...]) -> str:
    """The objective whose strengths are swept: the deployed one when evaluated."""
    deployed = str(TrainerSettings.model_fields["objective"].default)
    return deployed if deployed in objectives else objectives[0]


def _responsiveness(
    split: Split,
    data: EvalData,
    *,
    options: EvalOptions,
    models: dict[str, FitResult],
    log: Log,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """The ladder (each rung's relative change), then the swept model's responsiveness at
    each dislike-penalty strength and window, the other strengths at their served values."""
    for _, objective in VARIANTS:
        if objective not in models:
            log(f"responsiveness: training {objective} on seed 0")
            models[objective] = _train(split, data, options=options, objective=objective, seed=0)
    item_index = {item: i for i, item in enumerate(data.item_ids)}
    labels, source = similarity_labels(
        data.categories,
        [models[o].vectors for _, o in VARIANTS],
        n_clusters=min(N_CLUSTERS, len(data.item_ids)),
        seed=0,
    )
    starts = start_histories(
        split.train,
        item_index=item_index,
        n_users=options.sim_users,
        start_events=options.sim_start_events,
        seed=0,
    )
    config = SimConfig(
        n_users=options.sim_users,
        steps=options.sim_steps,
        top_k=options.sim_top_k,
        start_events=options.sim_start_events,
        seed=0,
    )
    served = options.strengths
    rankers: dict[str, _Ranker] = {}  # one per objective: its users and the training prior

    def ranker(objective: str) -> _Ranker:
        if objective not in rankers:
            dislike_input = options.train_config(objective, seed=0).dislike_input
            rankers[objective] = _ranker(
                models[objective], split, data, dislike_input=dislike_input
            )
        return rankers[objective]

    def run(objective: str, strengths: Strengths) -> tuple[FitResult, Responsiveness]:
        model = models[objective]
        prior = ranker(objective).prior
        result = simulate(
            model.encoder,
            model.vectors,
            labels,
            starts,
            config=config,
            drop_dislike=not options.train_config(objective, seed=0).dislike_input,
            serving=Serving(prior, strengths) if strengths != OFF else None,
        )
        return model, result

    rungs = [(variant, objective, OFF) for variant, objective in VARIANTS]
    if served != OFF:
        rungs.append((SERVED_VARIANT, VARIANTS[-1][1], served))
    out: dict[str, dict[str, Any]] = {}
    for variant, objective, strengths in rungs:
        model, result = run(objective, strengths)
        # What the rung costs: its seed-0 test metrics, ranked as the rung ranks.
        figures = ranker(objective).metrics(strengths)
        out[variant] = {
            "objective": objective,
            "similarity": source,
            "strengths": asdict(strengths),
            **{m: figures[m] for m in RUNG_METRICS},
            **result.to_dict(),
            # Why a variant responds or not: the learned input gate of a dislike vs a like
            # (the untrained encoder starts at -1 vs +1).
            "dislike_gate_mean": float(model.encoder.gate[EventType.DISLIKE].mean()),
            "like_gate_mean": float(model.encoder.gate[EventType.LIKE].mean()),
        }
        log(f"responsiveness {variant} ({objective}): {100 * result.relative_change:+.1f} %")
    swept = tradeoff_objective(options.objectives)
    sweeps: dict[str, list[dict[str, float]]] = {}
    if swept in models:
        # A coarser grid than the metrics' sweep: each point is a whole simulation.
        values = sorted({*RESPONSIVENESS_GRID, served.dislike_penalty})
        sweeps["dislike_penalty"] = [
            {
                "strength": v,
                RESPONSIVENESS: run(swept, replace(served, dislike_penalty=v))[1].relative_change,
            }
            for v in values
        ]
    return out, sweeps


def _ease_results(runs: list[EaseOutcome], skipped: str | None) -> dict[str, Any]:
    """The EASE section of ``results.json``: λ chosen per seed and each λ's validation figure
    (mean, std, per seed); its test metrics are the ``reference`` row."""
    grid: list[dict[str, Any]] = []
    if runs and runs[0].validation:
        per_seed = [{str(lam): r.validation.get(lam, math.nan) for lam in LAMBDAS} for r in runs]
        figures = summarize(per_seed)
        grid = [
            {"lambda": lam, f"validation_{SELECTION_METRIC}": figures[str(lam)]} for lam in LAMBDAS
        ]
    return {
        "skipped": skipped,
        "lambda": [r.lam for r in runs] if skipped is None else None,
        "grid": grid,
        "validation": {
            "protocol": "random per user",
            "share": VALIDATION_SHARE,
            "seed": VALIDATION_SEED,
            "selected_by": SELECTION_METRIC,
        },
        "max_items": MAX_ITEMS,
    }


def run_eval(options: EvalOptions, *, log: Log = _stderr) -> EvalOutcome:
    """Train and evaluate every objective on every seed; simulate responsiveness if asked."""
    started = time.perf_counter()
    data = load_eval_data(options)
    log(f"{data.name}: {len(data.item_ids)} items, {len(data.interactions)} interactions")
    per_seed: dict[str, list[dict[str, float]]] = {o: [] for o in options.objectives}
    served = options.strengths
    per_variant: dict[str, dict[str, list[dict[str, float]]]] = {
        o: {v: [] for v in SERVING_VARIANTS} for o in options.objectives
    }
    tradeoff: dict[str, list[dict[str, float]]] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    seed0_models: dict[str, FitResult] = {}
    seed0_split: Split | None = None
    eval_users: list[int] = []
    train_seconds = 0.0
    reference: list[dict[str, float]] = []
    ease_runs: list[EaseOutcome] = []
    ease_skipped: str | None = None
    ease_seconds = 0.0
    item_index = {item: i for i, item in enumerate(data.item_ids)}
    for seed in range(options.seeds):
        split = split_for_seed(data, options, seed=seed)
        eval_users.append(split.eval_users)
        users = build_eval_users(
            split.train, split.test, item_index=item_index, history_len=1
        )  # the baseline reads no history
        reference.append(popularity_metrics(split.train, users, item_index=item_index))
        if ease_skipped is None:
            t0 = time.perf_counter()
            # A split that does not depend on the seed (temporal, provided) gives the same
            # EASE: fit it once. Same test half means same training half: both come from
            # one dataset.
            same = seed0_split is not None and split.test == seed0_split.test
            ease = (
                ease_runs[0] if same else evaluate_ease(split.train, users, item_index=item_index)
            )
            ease_seconds += time.perf_counter() - t0
            ease_skipped = ease.skipped
            ease_runs.append(ease)
            if ease.metrics is not None:
                log(
                    f"seed {seed} EASE (λ {ease.lam:g}): recall@20 "
                    f"{ease.metrics['recall@20']:.4f} {AUC} {ease.metrics[AUC]:.4f}"
                )
            else:
                log(f"EASE skipped: {ease.skipped}")
        if seed == 0:
            seed0_split = split
        for objective in options.objectives:
            log(f"seed {seed}: training {objective} on {len(split.train)} events")
            t0 = time.perf_counter()
            model = _train(split, data, options=options, objective=objective, seed=seed)
            train_seconds += time.perf_counter() - t0
            config = options.train_config(objective, seed=seed)
            ranker = _ranker(model, split, data, dislike_input=config.dislike_input)
            metrics = ranker.metrics(OFF)
            per_seed[objective].append(metrics)
            for variant, strengths in _variants(served).items():
                figures = ranker.metrics(strengths)
                per_variant[objective][variant].append(figures)
                log(
                    f"seed {seed} {objective} {variant}: recall@20 {figures['recall@20']:.4f} "
                    f"dislike@20 {figures['dislike@20']:.4f} {AUC} {figures[AUC]:.4f}"
                )
            log(
                f"seed {seed} {objective}: recall@20 {metrics['recall@20']:.4f} "
                f"dislike@20 {metrics['dislike@20']:.4f} {AUC} {metrics[AUC]:.4f}"
            )
            if seed == 0 and objective == tradeoff_objective(options.objectives):
                tradeoff = _tradeoff(ranker, served)
            if seed == 0:
                seed0_models[objective] = model
                histories[objective] = model.loss_history
    objectives = {o: summarize(runs) for o, runs in per_seed.items()}
    results: dict[str, Any] = dict(objectives)
    results["summary"] = comparison(objectives)
    results["reference"] = {"popularity": summarize(reference)}
    if ease_skipped is None:
        results["reference"]["ease"] = summarize([r.metrics for r in ease_runs if r.metrics])
    results["ease"] = _ease_results(ease_runs, ease_skipped)
    results["serving"] = {
        "strengths": {
            "prior_weight": served.prior_weight,
            "dislike_penalty": served.dislike_penalty,
            "penalty_window": served.penalty_window,
        },
        "objectives": {
            o: {v: summarize(runs) for v, runs in variants.items()}
            for o, variants in per_variant.items()
        },
        "tradeoff": {"objective": tradeoff_objective(options.objectives), "seed": 0, **tradeoff},
    }
    if options.responsiveness:
        assert seed0_split is not None
        sim_started = time.perf_counter()
        results["responsiveness"], swept = _responsiveness(
            seed0_split, data, options=options, models=seed0_models, log=log
        )
        for name, points in swept.items():
            # Each swept strength's row gains the responsiveness at that strength.
            by_strength = {p["strength"]: p[RESPONSIVENESS] for p in points}
            for row in results["serving"]["tradeoff"].get(name, []):
                row[RESPONSIVENESS] = by_strength.get(row["strength"], math.nan)
        sim_seconds = time.perf_counter() - sim_started
    else:
        sim_seconds = 0.0
    results["config"] = {
        "dataset": data.name,
        "path": str(options.path) if options.path else None,
        "items": len(data.item_ids),
        "interactions": len(data.interactions),
        "split": options.protocol,
        "test_share": options.test_share if options.train_file is None else None,
        "seeds": options.seeds,
        "eval_users": eval_users,
        "ks": [10, 20, 50],
        "like_min": options.like_min,
        "dislike_max": options.dislike_max,
        "train": {o: options.train_config(o, seed=0).to_dict() for o in options.objectives},
        "simulation": {
            "users": options.sim_users,
            "steps": options.sim_steps,
            "top_k": options.sim_top_k,
            "start_events": options.sim_start_events,
            "train": {o: options.train_config(o, seed=0).to_dict() for _, o in VARIANTS},
        }
        if options.responsiveness
        else None,
        "seconds": {
            "total": time.perf_counter() - started,
            "training": train_seconds,
            "responsiveness": sim_seconds,
            "ease": ease_seconds,
        },
    }
    return EvalOutcome(results=results, loss_histories=histories)
