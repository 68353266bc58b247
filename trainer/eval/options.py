"""The options of ``veto eval``: argparse, then one validated frozen object.

Every inconsistency is a ``ConfigError`` raised here, before any data is read or any file
written.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.load import DATASETS
from trainer.learn.config import OBJECTIVES, TrainConfig
from veto.errors import ConfigError
from veto.ranking import Strengths
from veto.settings import ServiceSettings

SPLITS = ("random", "temporal")
# Formats of a provided --train/--test pair: the generic CSV, or `user item item …` per line.
SPLIT_FORMATS = ("csv", "lines")
# Fields the evaluation itself sets per run; --set may not override them.
_RUN_FIELDS = ("objective", "seed", "use_dislike_feature")
# Fewer epochs than the trainer's default: the MovieLens-1M target run (3 seeds × 2 objectives
# + the no-dislike variant = 7 fits of ~800k events) must finish within 10 minutes on this
# 2-core machine shared with other jobs; at 3 epochs it took 597 s. --epochs overrides it.
EVAL_EPOCHS = 3
# The served strengths of veto.ranking: the service's own defaults, defined once.
DEFAULT_PRIOR_WEIGHT = float(ServiceSettings.model_fields["prior_weight"].default)
DEFAULT_DISLIKE_PENALTY = float(ServiceSettings.model_fields["dislike_penalty"].default)
DEFAULT_PENALTY_WINDOW = int(ServiceSettings.model_fields["penalty_window"].default)


@dataclass(frozen=True)
class EvalOptions:
    """Everything one ``veto eval`` run needs; ``train_overrides`` go into TrainConfig."""

    out: Path
    dataset: str = "synthetic"
    path: Path | None = None
    objectives: tuple[str, ...] = ("ssm", "ssm+ntr")
    split: str = "random"
    test_share: float = 0.2
    train_file: Path | None = None
    test_file: Path | None = None
    split_format: str = "csv"
    seeds: int = 1
    responsiveness: bool = False
    like_min: float = 4.0
    dislike_max: float = 2.0
    items: int | None = None
    sim_users: int = 2_000
    sim_steps: int = 50
    sim_top_k: int = 20
    sim_start_events: int = 10
    progress: bool = True
    validation: bool = False  # evaluate on a slice of the training half (choosing settings)
    prior_weight: float = DEFAULT_PRIOR_WEIGHT  # the served strengths (veto.ranking)
    dislike_penalty: float = DEFAULT_DISLIKE_PENALTY
    penalty_window: int = DEFAULT_PENALTY_WINDOW
    train_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def strengths(self) -> Strengths:
        """The served configuration of the ranking core."""
        return Strengths(
            prior_weight=self.prior_weight,
            dislike_penalty=self.dislike_penalty,
            penalty_window=self.penalty_window,
        )

    @property
    def protocol(self) -> str:
        return "provided" if self.train_file is not None else self.split

    def train_config(self, objective: str, *, seed: int) -> TrainConfig:
        """The trainer's configuration of one run: defaults, then --set/--epochs."""
        values: dict[str, Any] = {"epochs": EVAL_EPOCHS}
        values.update(self.train_overrides)
        values.update(objective=objective, seed=seed)
        if objective == "ssm-nodislike":
            values["use_dislike_feature"] = False
        return TrainConfig(**values)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="veto eval",
        description="Train objectives side by side and evaluate them offline "
        "(Recall/NDCG/Dislike/coverage at 10, 20, 50; optional responsiveness simulation).",
    )
    p.add_argument("--dataset", default="synthetic", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--path", type=Path, help="dataset file or directory")
    p.add_argument("--objectives", default="ssm,ssm+ntr", help="comma-separated objectives")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--split", default="random", help="random | temporal (per user)")
    p.add_argument("--test-share", type=float, default=0.2)
    p.add_argument("--train", dest="train_file", type=Path, help="provided split: train file")
    p.add_argument("--test", dest="test_file", type=Path, help="provided split: test file")
    p.add_argument(
        "--split-format",
        help="format of --train/--test: csv (default; user,item,rating|type[,timestamp]"
        "[,category]) | lines (user item item ..., every item a like)",
    )
    p.add_argument("--seeds", type=int, default=1, help="repeats (split and training seed)")
    p.add_argument(
        "--validation",
        action="store_true",
        help="evaluate on a held-out slice of each training half, never reading the test "
        "half: for choosing settings",
    )
    p.add_argument("--epochs", type=int, help=f"training epochs (default {EVAL_EPOCHS})")
    p.add_argument(
        "--prior-weight",
        type=float,
        default=DEFAULT_PRIOR_WEIGHT,
        help="served item-prior strength (default: the service's VETO_PRIOR_WEIGHT default, "
        f"{DEFAULT_PRIOR_WEIGHT:g})",
    )
    p.add_argument(
        "--dislike-penalty",
        type=float,
        default=DEFAULT_DISLIKE_PENALTY,
        help="served dislike-penalty strength (default: the service's VETO_DISLIKE_PENALTY "
        f"default, {DEFAULT_DISLIKE_PENALTY:g})",
    )
    p.add_argument(
        "--penalty-window",
        type=int,
        default=DEFAULT_PENALTY_WINDOW,
        help="the dislike penalty's sources: the user's newest N dislikes, 0 = all (default: "
        f"the service's VETO_PENALTY_WINDOW default, {DEFAULT_PENALTY_WINDOW})",
    )
    p.add_argument("--responsiveness", action="store_true", help="run the NTR §4 simulation")
    p.add_argument("--like-min", type=float, default=4.0)
    p.add_argument("--dislike-max", type=float, default=2.0)
    p.add_argument("--items", type=int, help="catalog size of the synthetic dataset")
    p.add_argument("--sim-users", type=int, default=2_000, help="simulated users")
    p.add_argument("--sim-steps", type=int, default=50, help="walk length k")
    p.add_argument("--sim-top-k", type=int, default=20)
    p.add_argument("--sim-start-events", type=int, default=10, help="0 = start empty")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field, e.g. --set tau=0.1 --set ntr_weight=2",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _objectives(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    if not names:
        raise ConfigError("--objectives is empty")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(
            f"unknown objective(s) {', '.join(unknown)}; one of {', '.join(OBJECTIVES)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"an objective is listed twice in {raw!r}")
    return names


def _overrides(sets: list[str], epochs: int | None) -> dict[str, Any]:
    types = {name: type(value) for name, value in TrainConfig().to_dict().items()}
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a TrainConfig field")
        if key in _RUN_FIELDS:
            raise ConfigError(f"--set {key}: set by the evaluation itself")
        kind = types[key]
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = kind(value)
        except ValueError:
            raise ConfigError(f"--set {key}: {value!r} is not a {kind.__name__}") from None
    if epochs is not None:
        out["epochs"] = epochs
    return out


def parse_options(argv: list[str]) -> EvalOptions:
    """Parse and validate; argparse exits on syntax errors, the rest raise ConfigError."""
    args = _parser().parse_args(argv)
    if args.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; one of {', '.join(DATASETS)}")
    if args.split not in SPLITS:
        raise ConfigError(f"unknown split {args.split!r}; one of {', '.join(SPLITS)}")
    if (args.train_file is None) != (args.test_file is None):
        raise ConfigError("a provided split needs both --train FILE and --test FILE")
    if args.train_file is not None and args.split != "random":
        raise ConfigError("--split does not apply to a provided --train/--test split")
    if args.split_format is not None and args.train_file is None:
        raise ConfigError("--split-format applies only to a provided --train/--test split")
    split_format = "csv" if args.split_format is None else args.split_format
    if split_format not in SPLIT_FORMATS:
        raise ConfigError(
            f"unknown --split-format {split_format!r}; one of {', '.join(SPLIT_FORMATS)}"
        )
    if not 0.0 < args.test_share < 1.0:
        raise ConfigError(f"--test-share must be strictly between 0 and 1, got {args.test_share}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a directory")
    if args.sim_users < 1:
        raise ConfigError(f"--sim-users must be >= 1, got {args.sim_users}")
    for flag, value in (
        ("--prior-weight", args.prior_weight),
        ("--dislike-penalty", args.dislike_penalty),
    ):
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{flag} must be a finite number >= 0, got {value}")
    if args.penalty_window < 0:
        raise ConfigError(f"--penalty-window must be >= 0, got {args.penalty_window}")
    options = EvalOptions(
        out=args.out,
        dataset=args.dataset,
        path=args.path,
        objectives=_objectives(args.objectives),
        split=args.split,
        test_share=args.test_share,
        train_file=args.train_file,
        test_file=args.test_file,
        split_format=split_format,
        seeds=args.seeds,
        responsiveness=args.responsiveness,
        like_min=args.like_min,
        dislike_max=args.dislike_max,
        items=args.items,
        sim_users=args.sim_users,
        sim_steps=args.sim_steps,
        sim_top_k=args.sim_top_k,
        sim_start_events=args.sim_start_events,
        progress=args.progress,
        validation=args.validation,
        prior_weight=args.prior_weight,
        dislike_penalty=args.dislike_penalty,
        penalty_window=args.penalty_window,
        train_overrides=_overrides(args.sets, args.epochs),
    )
    # Build every run's TrainConfig now so a bad value fails before any work.
    for objective in options.objectives:
        options.train_config(objective, seed=0)
    return options
