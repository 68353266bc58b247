"""``veto eval``: offline evaluation of training objectives side by side, and the NTR paper's
responsiveness simulation, written as a report (JSON, Markdown, PNG plots) to ``--out``.

    veto eval --dataset ml-1m --path ../shared/data/movielens-1m \\
        --objectives ssm,ssm+ntr --seeds 3 --responsiveness --out /tmp/eval-ml1m

Options are validated and the data read before anything is trained; the report is written
only when every part of it exists. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import math
import sys
import time

from trainer.eval.options import parse_options
from trainer.eval.report import write_report
from trainer.eval.run import run_eval
from veto.errors import VetoError


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:+.1f} %"


def main(argv: list[str]) -> int:
    """Run the evaluation; 0 on success, 2 on bad options or data."""
    started = time.perf_counter()
    try:
        options = parse_options(argv)
        outcome = run_eval(options)
        written = write_report(options.out, outcome.results, loss_histories=outcome.loss_histories)
    except VetoError as exc:
        print(f"veto eval: error: {exc.message}", file=sys.stderr)
        return 2
    summary = outcome.results.get("summary", {})
    if summary:
        print(
            f"{summary['compared']} vs {summary['baseline']}: "
            f"Dislike@20 {_pct(summary.get('dislike@20_change'))}, "
            f"Recall@20 {_pct(summary.get('recall@20_change'))}"
        )
    for variant, row in outcome.results.get("responsiveness", {}).items():
        print(f"responsiveness {variant}: {_pct(row['relative_change'])}")
    print(f"report: {', '.join(str(p) for p in written)} ({time.perf_counter() - started:.0f} s)")
    return 0
