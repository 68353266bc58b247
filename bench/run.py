"""The benchmark suite: real processes, each figure next to its reference in the same run.

    python -m bench.run                   # quick (make bench): 100k items, a few minutes
    python -m bench.run --full            # make bench-full: 100k and 1M items, longer runs
    python -m bench.run --only swap,ingest
    python -m bench.run --soak --soak-seconds 600

Benchmarks: serving (GET req/s, p50/p99 vs a bare FastAPI fixed list), proxy (GET req/s
through ``veto proxy`` vs straight to the replica, bench/proxy.py), memory (service RSS
vs N x D x 4), swap (hot swap under GET load), ingest (feedback events/s, single and batches
of 100, vs a bare FastAPI POST), profile (CPU µs per GET and POST by category, from py-spy
samples of ``veto serve``, vs the bare apps: bench/profile.py), training (examples/s,
bench/train.py), ddp (examples/s with 1 and N data-parallel ranks, bench/train.py; only with
--only ddp, ranks from --nproc), freshness (feedback-to-served-model lag, bench/train.py),
catalog (PUT of a
new item to it appearing in ``similar``: cold start, bench/catalog.py), soak (only with
--soak or --only soak).
Load generators run in their own processes (aiohttp: bench/common.py for GETs,
bench/loadgen.py for POSTs and mixes). Each benchmark writes bench/results/<name>.json; the
Markdown table of every result there is printed and written to bench/results/summary.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import catalog, ingest, memory, procs, profile, proxy, serving, soak, swap
from bench.report import RESULTS, Figure, Skipped, load_all, machine_info, save, summary_markdown
from bench.stack import Stack, seeded_stack

NAMES = (
    "serving",
    "proxy",
    "memory",
    "swap",
    "ingest",
    "profile",
    "training",
    "ddp",
    "freshness",
    "catalog",
    "soak",
)
TRAIN_AIM = 50_000.0  # examples/s (issue 3)
FRESHNESS_AIM = {100_000: 5.0, 1_000_000: 30.0}  # p50 seconds (issue 3)


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    catalogs: tuple[int, ...]  # item counts of the serving stacks
    users: int
    duration: float
    warmup: float
    concurrency: int
    swap_duration: float
    train_catalogs: tuple[int, ...]
    trials: int
    trainer_interval: float
    flat_max_items: int


def plan(args: argparse.Namespace) -> Plan:
    """Quick, full, or tiny (a smoke run of the harness itself)."""
    if args.tiny:
        p = Plan((5_000,), 500, 2.0, 0.5, 8, 8.0, (5_000,), 1, 1.0, args.flat_max_items)
    elif args.full:
        p = Plan(
            (100_000, 1_000_000),
            10_000,
            20.0,
            3.0,
            32,
            30.0,
            (100_000, 1_000_000),
            5,
            5.0,
            args.flat_max_items,
        )
    else:
        p = Plan((100_000,), 10_000, 8.0, 2.0, 32, 15.0, (100_000,), 3, 2.0, args.flat_max_items)
    if args.items:
        p = Plan(
            (args.items,),
            args.users or p.users,
            p.duration,
            p.warmup,
            p.concurrency,
            p.swap_duration,
            (args.items,),
            p.trials,
            p.trainer_interval,
            p.flat_max_items,
        )
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="1M items too, longer runs")
    p.add_argument("--tiny", action="store_true", help="5k items, seconds: a harness smoke run")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NAMES)}")
    p.add_argument("--soak", action="store_true", help="also run the soak")
    p.add_argument("--soak-seconds", type=float, default=600.0)
    p.add_argument("--soak-items", type=int, default=100_000)
    p.add_argument("--items", type=int, default=None, help="one catalog of this size instead")
    p.add_argument("--users", type=int, default=None)
    p.add_argument(
        "--flat-max-items",
        type=int,
        default=50_000,
        help="flat index up to this many items, IVF above (as bench/serve.py)",
    )
    p.add_argument(
        "--nproc", default="1,2", help="ddp: rank counts to compare, the first the reference"
    )
    p.add_argument("--ddp-epochs", type=int, default=5, help="ddp: epochs per configuration")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p


def _selected(args: argparse.Namespace) -> list[str]:
    if args.only:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(NAMES))
        if unknown:
            raise SystemExit(f"bench.run: unknown benchmark(s) {unknown}; known: {NAMES}")
        return chosen
    return [n for n in NAMES if (n != "soak" or args.soak) and n != "ddp"]


class Runner:
    """Runs each benchmark, saves its JSON with the machine as it was at its start."""

    def __init__(self, out_dir: Path, command: str) -> None:
        self.out_dir = out_dir
        self.command = command
        self.failed: list[str] = []

    def run(self, name: str, body: Callable[[], tuple[list[Figure], dict[str, Any]]]) -> None:
        """Measure, print the figures, save; a failure is reported and the run goes on."""
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        machine = machine_info()
        try:
            figures, details = body()
        except Skipped as exc:
            print(f"   skipped: {exc}", flush=True)
            return
        except Exception as exc:  # one broken benchmark must not lose the others
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            self.failed.append(name)
            return
        details["wall_seconds"] = round(time.perf_counter() - started, 1)
        path = save(
            name,
            figures,
            details=details,
            command=self.command,
            out_dir=self.out_dir,
            machine_desc=machine,
        )
        for f in figures:
            ratio = "" if f.ratio is None else f"  ratio {f.ratio}"
            print(
                f"   {f.label}: {f.value:g} {f.unit}  ({f.reference_label}: "
                f"{f.reference:g}){ratio}",
                flush=True,
            )
        print(f"   wrote {path}", flush=True)


def _label(n_items: int) -> str:
    return f"{n_items // 1000}k" if n_items < 1_000_000 else f"{n_items // 1_000_000}m"


def _serving_stack(runner: Runner, p: Plan, chosen: list[str], n_items: int) -> None:
    """One seeded stack per catalog size: serving, memory, swap, ingest, profile (in that order:
    ingest adds history, memory is read after serving load has touched the index)."""
    wanted = [n for n in ("serving", "proxy", "memory", "swap", "ingest", "profile") if n in chosen]
    if not wanted:
        return
    with tempfile.TemporaryDirectory(prefix="veto-bench-") as tmp:
        work = Path(tmp)
        print(f"== seeding {n_items} items, {p.users} users", flush=True)
        with seeded_stack(
            work, n_items=n_items, n_users=p.users, flat_max_items=p.flat_max_items
        ) as stack:
            print(f"   seeded ({stack.index}) in {stack.seed_seconds}s", flush=True)
            refs = _references(stack)
            try:
                _measure_stack(runner, p, wanted, stack, refs, n_items)
            finally:
                for child in refs.values():
                    child.stop()


def _references(stack: Stack) -> dict[str, procs.Child]:
    get_ref = procs.bare(
        "bench.serve:bare_app", env=stack.env, logdir=stack.logdir, name="bare-get"
    )
    post_ref = procs.bare(
        "bench.ingest:bare_app", env=stack.env, logdir=stack.logdir, name="bare-post"
    )
    return {"get": get_ref, "post": post_ref}


def _measure_stack(
    runner: Runner,
    p: Plan,
    wanted: Sequence[str],
    stack: Stack,
    refs: dict[str, procs.Child],
    n_items: int,
) -> None:
    load = dict(concurrency=p.concurrency, duration=p.duration, warmup=p.warmup)
    suffix = _label(n_items)
    if "serving" in wanted:
        runner.run(f"serving_{suffix}", lambda: serving.measure(stack, refs["get"], **load))  # type: ignore[arg-type]
    if "proxy" in wanted:
        runner.run(f"proxy_{suffix}", lambda: proxy.measure(stack, **load))  # type: ignore[arg-type]
    if "memory" in wanted:
        runner.run(f"memory_{suffix}", lambda: memory.measure(stack, refs["get"]))
    if "swap" in wanted:
        runner.run(
            f"swap_{suffix}",
            lambda: swap.measure(
                stack,
                concurrency=p.concurrency,
                duration=p.swap_duration,
                warmup=p.warmup,
                swap_at=p.swap_duration / 3,
                flat_max_items=p.flat_max_items,
            ),
        )
    if "ingest" in wanted:
        runner.run(f"ingest_{suffix}", lambda: ingest.measure(stack, refs["post"], **load))  # type: ignore[arg-type]
    if "profile" in wanted:
        runner.run(
            f"profile_{suffix}",
            lambda: profile.measure(
                stack,
                refs,
                tree=str(Path(__file__).resolve().parent.parent),
                concurrency=p.concurrency,
                seconds=max(2, round(p.duration)),
            ),
        )


def _training(p: Plan) -> tuple[list[Figure], dict[str, Any]]:
    from bench.train import throughput  # imports torch: only when training is measured

    rows = [throughput(n, users=2000, events_per_user=60, epochs=2) for n in p.train_catalogs]
    figures = [
        Figure(
            f"training examples/s, {_label(r['n_items'])} items",
            float(r["examples_per_second"]),
            "examples/s",
            "aim (issue 3)",
            TRAIN_AIM,
            aim=">= 50k",
            passed=r["examples_per_second"] >= TRAIN_AIM,
        )
        for r in rows
    ]
    return figures, {
        "rows": rows,
        "source": "bench.train.throughput (trainer.learn.fit, 2 threads)",
    }


def _nprocs(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"bench.run: --nproc wants rank counts like 1,2; got {text!r}")
    return counts


def _ranks(row: dict[str, Any]) -> str:
    threads = f"{row['threads_per_rank']} thread{'s' if row['threads_per_rank'] > 1 else ''}"
    return f"1 process × {threads}" if row["ranks"] == 1 else f"{row['ranks']} ranks × {threads}"


def _ddp(p: Plan, nprocs: list[int], epochs: int) -> tuple[list[Figure], dict[str, Any]]:
    from bench.train import parallel_throughput  # imports torch

    figures: list[Figure] = []
    rows: list[dict[str, Any]] = []
    for n in p.train_catalogs:
        found = parallel_throughput(
            n, nprocs=nprocs, users=2000, events_per_user=60, epochs=epochs, threads=2
        )
        rows += found
        first = found[0]
        reference = f"{_ranks(first)}, same run"
        figures += [
            Figure(
                f"training examples/s, {_ranks(r)}, {_label(n)} items",
                float(r["examples_per_second"]),
                "examples/s",
                reference,
                float(first["examples_per_second"]),
            )
            for r in found[1:]
        ]
    return figures, {
        "rows": rows,
        "source": "bench.train.parallel_throughput (trainer.learn.fit, gloo ranks)",
    }


def _freshness(p: Plan) -> tuple[list[Figure], dict[str, Any]]:
    from bench.train import freshness

    rows = []
    for n in p.train_catalogs:
        with tempfile.TemporaryDirectory(prefix="veto-bench-") as tmp:
            rows.append(
                freshness(n, trials=p.trials, interval=p.trainer_interval, workdir=Path(tmp))
            )
    figures = []
    for r in rows:
        aim = FRESHNESS_AIM.get(r["n_items"], 5.0 if r["n_items"] <= 100_000 else 30.0)
        figures.append(
            Figure(
                f"feedback-to-model p50, {_label(r['n_items'])} items",
                r["p50_seconds"],
                "s",
                "aim (issue 3)",
                aim,
                aim=f"<= {aim:g} s",
                passed=r["p50_seconds"] <= aim,
            )
        )
    return figures, {"rows": rows, "source": "bench.train.freshness (serve + train processes)"}


def _catalog(p: Plan, n_items: int) -> tuple[list[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="veto-bench-") as tmp:
        return catalog.measure(
            Path(tmp),
            n_items=n_items,
            trials=max(5, p.trials),  # a p50 over at least 5 (issue 13)
            interval=p.trainer_interval,
            flat_max_items=p.flat_max_items,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, then print and write the summary of all results."""
    args = _parser().parse_args(argv)
    chosen = _selected(args)
    p = plan(args)
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    runner = Runner(args.out_dir, command)
    for n_items in p.catalogs:
        try:
            _serving_stack(runner, p, chosen, n_items)
        except Exception as exc:  # a stack that does not start must not stop the others
            print(f"   FAILED: stack of {n_items} items: {type(exc).__name__}: {exc}", flush=True)
            runner.failed.append(f"stack_{_label(n_items)}")
    if "training" in chosen:
        runner.run("training", lambda: _training(p))
    if "ddp" in chosen:
        nprocs = _nprocs(args.nproc)
        runner.run("ddp", lambda: _ddp(p, nprocs, args.ddp_epochs))
    if "freshness" in chosen:
        runner.run("freshness", lambda: _freshness(p))
    if "catalog" in chosen:
        for n in p.train_catalogs:
            runner.run(f"catalog_{_label(n)}", lambda n=n: _catalog(p, n))
    if "soak" in chosen:
        seconds = args.soak_seconds

        def _soak() -> tuple[list[Figure], dict[str, Any]]:
            with tempfile.TemporaryDirectory(prefix="veto-soak-") as tmp:
                return soak.measure(
                    Path(tmp),
                    n_items=args.soak_items,
                    seconds=seconds,
                    concurrency=16,
                    interval=3.0,
                )

        runner.run("soak", _soak)
    table = summary_markdown(load_all(args.out_dir))
    (args.out_dir / "summary.md").write_text(table)
    print()
    print(table)
    if runner.failed:
        print(f"failed: {', '.join(runner.failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
