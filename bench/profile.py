"""CPU per request and where it goes: py-spy samples of the real ``veto serve`` under the
benchmark load, attributed to categories by the frames they contain.

    python -m bench.profile                                  # this checkout, 100k items
    python -m bench.profile --tree /tmp/veto-before --name profile_before
    python -m bench.run --only profile                       # on the suite's seeded stack

The service's CPU time over a window is read from /proc (utime + stime, every thread) and
divided by the requests completed in that window; py-spy (``record --format raw``, not idle
threads) samples the same window and splits that time by category. Attribution, for each
sample: walk its frames from the innermost outwards; the first frame that a rule of
``RULES`` names decides (a C call with no Python frame below it, such as pydantic's
``model_dump_json``, is named by its caller's source line); frames no rule names (the
standard library, asyncio, numpy, uvicorn's server loop) are passed through; a sample no
frame decides is ``other``. The service's own code outside the named modules is ``other``,
so its work is never put on the FastAPI frame that called it.

``--tree PATH`` measures any checkout with the same procedure: Redis (AOF, ``appendfsync
always``) seeded by that tree's own ``bench.serve.seed_catalog``, that tree's ``veto serve``
(``PYTHONPATH=PATH``, started in PATH), and this checkout's bare FastAPI references, load
generator and attribution.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.loadgen import GET, POST, Mix, start_load
from bench.report import RESULTS, Figure, Skipped, machine_info, save
from bench.stack import API_KEY, Stack

HTTP = "HTTP parsing"
ROUTING = "routing/validation"
REDIS = "Redis"
ENCODING = "encoding"
SEARCH = "ANN search"
FILTERING = "filtering"
SERIALISATION = "serialisation"
OTHER = "other"
CATEGORIES = (HTTP, ROUTING, REDIS, ENCODING, SEARCH, FILTERING, SERIALISATION, OTHER)


@dataclass(frozen=True)
class Rule:
    """Frames whose module path starts with ``prefix`` (and, if given, whose function is
    ``function``) belong to ``category``."""

    category: str
    prefix: str
    function: str | None = None

    def matches(self, frame: Frame) -> bool:
        return frame.module.startswith(self.prefix) and (
            self.function is None or frame.function == self.function
        )


# First match wins within a frame, so specific rules come before their module's rule.
RULES: tuple[Rule, ...] = (
    Rule(SERIALISATION, "fastapi/routing.py", "serialize_response"),
    Rule(SERIALISATION, "fastapi/encoders.py"),
    Rule(SERIALISATION, "fastapi/responses.py"),
    Rule(SERIALISATION, "starlette/responses.py"),
    Rule(SERIALISATION, "json/"),
    Rule(SERIALISATION, "service/schemas.py", "to_json"),
    Rule(HTTP, "uvicorn/protocols/"),
    Rule(HTTP, "h11/"),
    Rule(HTTP, "httptools/"),
    Rule(REDIS, "redis/"),
    Rule(REDIS, "hiredis/"),
    Rule(REDIS, "service/feedback_store.py"),  # the script's arguments and its reply decoded
    Rule(ENCODING, "veto/encoder.py"),
    Rule(SEARCH, "faiss/"),
    Rule(SEARCH, "veto/search.py"),
    Rule(FILTERING, "service/ranking.py"),
    Rule(FILTERING, "veto/ranking.py"),
    Rule(ROUTING, "starlette/"),
    Rule(ROUTING, "fastapi/"),
    Rule(ROUTING, "pydantic/"),
    Rule(ROUTING, "pydantic_core/"),
    Rule(ROUTING, "service/middleware.py"),
    Rule(ROUTING, "service/deps.py"),
    Rule(ROUTING, "service/fast_path.py"),
    Rule(ROUTING, "service/intake.py"),
    Rule(ROUTING, "service/schemas.py"),
    Rule(OTHER, "service/"),
    Rule(OTHER, "veto/"),
    Rule(OTHER, "prometheus_client/"),
)

# The innermost frame's source line when it calls into C (no Python frame below it).
CALL_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (SERIALISATION, re.compile(r"model_dump_json|\bto_json\(|orjson\.|json\.dumps")),
    (ROUTING, re.compile(r"model_validate|validate_python|validate_json")),
)

SourceLine = Callable[[str, int], str]


@dataclass(frozen=True)
class Frame:
    """One py-spy frame: function, file as recorded, module path (from the package down)."""

    function: str
    path: str
    line: int
    module: str


@dataclass(frozen=True)
class Sample:
    """A stack (outermost frame first) and how many times py-spy saw it."""

    frames: tuple[Frame, ...]
    count: int


_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*?)(?::(?P<line>\d+))?\)$")
_LIB = re.compile(r"/lib/python3\.\d+/(?P<rest>.*)$")


def module_path(path: str, tree: str = "") -> str:
    """``service/routes.py`` for a file of ``tree``, ``fastapi/routing.py`` for an installed
    package, ``json/encoder.py`` for the standard library; other paths unchanged."""
    root = tree.rstrip("/") + "/" if tree else ""
    if root and path.startswith(root):
        return path[len(root) :]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    lib = _LIB.search(path)
    return lib.group("rest") if lib else path


def parse_raw(text: str, *, tree: str = "") -> list[Sample]:
    """Samples of ``py-spy record --format raw`` (``frame;frame;... count`` per line)."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw)
            if m is None:
                frames.append(Frame(raw, "", 0, raw))
                continue
            path = m.group("path")
            line_no = int(m.group("line") or 0)
            frames.append(Frame(m.group("function"), path, line_no, module_path(path, tree)))
        samples.append(Sample(tuple(frames), int(count)))
    return samples


def _read_line(path: str, line: int) -> str:
    import linecache

    return linecache.getline(path, line)


def categorise(frames: Sequence[Frame], *, source_line: SourceLine = _read_line) -> str:
    """The category of one stack (outermost first), by the rule of the module docstring."""
    if frames and frames[-1].line:
        text = source_line(frames[-1].path, frames[-1].line)
        for category, call in CALL_RULES:
            if call.search(text):
                return category
    for frame in reversed(frames):
        for rule in RULES:
            if rule.matches(frame):
                return rule.category
    return OTHER


def attribute(samples: Sequence[Sample], *, source_line: SourceLine = _read_line) -> dict[str, int]:
    """Sample counts per category (every category present, 0 when none)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for s in samples:
        counts[categorise(s.frames, source_line=source_line)] += s.count
    return counts


def top_other(
    samples: Sequence[Sample], *, n: int = 8, source_line: SourceLine = _read_line
) -> list[tuple[str, int]]:
    """What ``other`` holds: its samples by innermost module:function, most first."""
    return top_frames(samples, OTHER, n=n, source_line=source_line)


def top_frames(
    samples: Sequence[Sample], category: str, *, n: int = 6, source_line: SourceLine = _read_line
) -> list[tuple[str, int]]:
    """A category's samples by innermost module:function, most first."""
    seen: Counter[str] = Counter()
    for s in samples:
        if s.frames and categorise(s.frames, source_line=source_line) == category:
            leaf = s.frames[-1]
            seen[f"{leaf.module}:{leaf.function}"] += s.count
    return seen.most_common(n)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / os.sysconf("SC_CLK_TCK")


def py_spy() -> str:
    """The py-spy binary (next to this Python, else on PATH); Skipped when missing."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise Skipped(
            "py-spy not found: install the dev extra (make install) or `pip install py-spy`"
        )
    return found


@dataclass(frozen=True)
class Kind:
    """One request kind to profile: its name, GET or POST, events per POST."""

    name: str
    kind: int
    batch: int = 1


GET_K10 = Kind("GET recommendations", GET)
POST_1 = Kind("POST feedback, 1 event", POST, 1)
POST_100 = Kind("POST feedback, 100 events", POST, 100)
KINDS = {"get": GET_K10, "post1": POST_1, "post100": POST_100}


def _mix(kind: Kind, stack: Stack) -> Mix:
    if kind.kind == GET:
        return Mix(get_paths=stack.user_paths())
    return Mix(
        post_share=1.0, batch=kind.batch, users=stack.n_users, items=stack.n_items, api_key=API_KEY
    )


def profile_load(
    target: procs.Child,
    mix: Mix,
    *,
    kind: int,
    tree: str,
    concurrency: int,
    seconds: int,
    rate: int,
    workdir: Path,
    redis_pid: int | None = None,
    nonblocking: bool = True,
) -> dict[str, Any]:
    """Drive ``target`` with ``mix``; sample it with py-spy for ``seconds`` once the load
    runs; CPU µs per completed request, total and by category."""
    spy = py_spy()
    duration = 2 * seconds + 20  # the generator's start, a warm-up second, both windows
    load = start_load(target.url, mix, concurrency=concurrency, duration=duration, warmup=0)
    out = workdir / f"{target.name}-{int(time.time() * 1000)}.txt"
    cmd = [spy, "record", "--pid", str(target.proc.pid), "--rate", str(rate)]
    cmd += ["--duration", str(seconds), "--format", "raw", "--full-filenames", "-o", str(out)]
    if nonblocking:
        cmd.append("--nonblocking")
    pids = [target.proc.pid] + ([redis_pid] if redis_pid else [])
    try:
        _wait_busy(target.proc.pid)  # the generator process is up and sending
        time.sleep(1.0)
        plain = _Window.open(pids)  # the same load, not sampled: the cost without py-spy
        time.sleep(seconds)
        plain = plain.close(pids)
        sampled = _Window.open(pids)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        sampled = sampled.close(pids)
        records = load.result()
    except BaseException:
        load.kill()
        raise
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"py-spy failed ({done.returncode}): {done.stderr.strip()[-400:]}; "
            "check that ptrace is allowed (root, or CAP_SYS_PTRACE)"
        )
    if not records.measure_from <= plain.t0 or not sampled.t1 <= records.stop_at:
        raise RuntimeError("the load did not cover the profiled window; raise the duration")
    ends = records.start + records.latency  # (R,) completion times
    windows: dict[str, dict[str, Any]] = {}
    for label, w in (("plain", plain), ("sampled", sampled)):
        inside = (ends >= w.t0) & (ends < w.t1) & (records.kind == kind)
        n = int(inside.sum())
        windows[label] = {
            "requests": n,
            "failed": int((inside & ~records.ok).sum()),
            "window_s": round(w.t1 - w.t0, 3),
            "rps": round(n / (w.t1 - w.t0), 1),
            "p50_ms": _pct(records.latency[inside], 50),
            "p99_ms": _pct(records.latency[inside], 99),
            "cpu_us_per_request": round(w.cpu[0] * 1e6 / max(n, 1), 1),
            "redis_server_cpu_us_per_request": (
                round(w.cpu[1] * 1e6 / max(n, 1), 1) if redis_pid else None
            ),
        }
    samples = parse_raw(out.read_text(), tree=tree)
    counts = attribute(samples)
    total = sum(counts.values())
    cpu_us = windows["sampled"]["cpu_us_per_request"]
    per_request = {c: round(cpu_us * n / total, 1) if total else 0.0 for c, n in counts.items()}
    service_roots = {
        f.path[: -len(f.module)]
        for s in samples
        for f in s.frames
        if f.module.startswith("service/")
    }
    return {
        **windows["sampled"],
        "cpu_us_by_category": per_request,
        "samples": total,
        "samples_by_category": counts,
        "other_top": top_other(samples),
        "top_frames": {c: top_frames(samples, c) for c in CATEGORIES},
        "unsampled": windows["plain"],
        "py_spy": " ".join(cmd[1:]),
        "py_spy_summary": [
            line for line in (done.stdout + done.stderr).splitlines() if "Samples" in line
        ],
        "service_code_from": sorted(service_roots),
    }


def _wait_busy(pid: int, *, timeout: float = 60.0, share: float = 0.2) -> None:
    """Return once ``pid`` uses more than ``share`` of a core (the load reached it)."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - before > share * 0.25:
            return
        before = now
    raise RuntimeError(f"no load reached pid {pid} within {timeout:g} s")


@dataclass(frozen=True)
class _Window:
    """A stretch of the load: monotonic start and end, CPU seconds of each process in it."""

    t0: float
    cpu0: tuple[float, ...]
    t1: float = 0.0
    cpu: tuple[float, ...] = ()

    @classmethod
    def open(cls, pids: Sequence[int]) -> _Window:
        return cls(time.monotonic(), tuple(cpu_seconds(p) for p in pids))

    def close(self, pids: Sequence[int]) -> _Window:
        spent = tuple(cpu_seconds(p) - c for p, c in zip(pids, self.cpu0, strict=True))
        return _Window(self.t0, self.cpu0, time.monotonic(), spent)


def _pct(latency: Any, q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(latency, q)) * 1000.0, 3) if latency.size else None


def _redis_pid(url: str) -> int | None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()


def measure(
    stack: Stack,
    refs: dict[str, procs.Child],
    *,
    kinds: Sequence[Kind] = (GET_K10, POST_1, POST_100),
    tree: str,
    concurrency: int,
    seconds: int,
    rate: int = 100,
    nonblocking: bool = True,
) -> tuple[list[Figure], dict[str, Any]]:
    """Each kind against the service, then against its bare reference, same tool."""
    figures: list[Figure] = []
    details: dict[str, Any] = {
        "tree": tree,
        "items": stack.n_items,
        "users": stack.n_users,
        "index": stack.index,
        "concurrency": concurrency,
        "profiled_seconds": seconds,
        "rate_hz": rate,
        "rules": [[r.category, r.prefix, r.function] for r in RULES],
        "redis_appendfsync": "always",
    }
    redis_pid = _redis_pid(stack.redis_url)
    with tempfile.TemporaryDirectory(prefix="veto-profile-") as tmp:
        work = Path(tmp)
        common = dict(concurrency=concurrency, seconds=seconds, rate=rate, workdir=work)
        for kind in kinds:
            mix = _mix(kind, stack)
            here = str(Path(__file__).resolve().parent.parent)
            service = profile_load(
                stack.service,
                mix,
                kind=kind.kind,
                tree=tree,
                redis_pid=redis_pid,
                nonblocking=nonblocking,
                **common,  # type: ignore[arg-type]
            )
            ref = refs["get" if kind.kind == GET else "post"]
            bare = profile_load(ref, mix, kind=kind.kind, tree=here, **common)  # type: ignore[arg-type]
            details[kind.name] = {"service": service, "reference": bare, "batch": kind.batch}
            _print_kind(kind, service, bare)
            figures.append(
                Figure(
                    f"{kind.name}: CPU per request, total",
                    service["cpu_us_per_request"],
                    "µs",
                    "bare FastAPI",
                    bare["cpu_us_per_request"],
                )
            )
            figures += [
                Figure(
                    f"{kind.name}: CPU per request, {c}",
                    service["cpu_us_by_category"][c],
                    "µs",
                    "bare FastAPI",
                    bare["cpu_us_by_category"][c],
                )
                for c in CATEGORIES
            ]
    return figures, details


def _print_kind(kind: Kind, service: dict[str, Any], bare: dict[str, Any]) -> None:
    print(
        f"   {kind.name}: {service['requests']} requests in {service['window_s']} s "
        f"({service['rps']}/s, p99 {service['p99_ms']} ms), {service['samples']} samples; "
        f"bare {bare['rps']}/s; not sampled: {service['unsampled']['cpu_us_per_request']} µs, "
        f"{service['unsampled']['rps']}/s, bare {bare['unsampled']['cpu_us_per_request']} µs, "
        f"{bare['unsampled']['rps']}/s",
        flush=True,
    )
    print(f"   {'CPU µs per request':<22}{'service':>10}{'bare':>10}", flush=True)
    for c in CATEGORIES:
        s, b = service["cpu_us_by_category"][c], bare["cpu_us_by_category"][c]
        print(f"   {c:<22}{s:>10.1f}{b:>10.1f}", flush=True)
    total = f"   {'total':<22}{service['cpu_us_per_request']:>10.1f}"
    print(f"{total}{bare['cpu_us_per_request']:>10.1f}", flush=True)
    if service["redis_server_cpu_us_per_request"] is not None:
        print(f"   redis-server CPU µs per request: {service['redis_server_cpu_us_per_request']}")


_SEED = """
import sys
from pathlib import Path
import redis
from bench.serve import seed_catalog
client = redis.Redis.from_url(sys.argv[1])
print(seed_catalog(Path(sys.argv[2]), client, n_items=int(sys.argv[3]),
                   n_users=int(sys.argv[4]), flat_max=int(sys.argv[5])))
"""


def tree_env(tree: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the tree first on the import path (before any editable install)."""
    return {**env, "PYTHONPATH": str(tree)}


@contextmanager
def tree_stack(
    tree: Path, workdir: Path, *, n_items: int, n_users: int, flat_max_items: int
) -> Iterator[Stack]:
    """A seeded stack whose version and ``veto serve`` come from ``tree``'s own code."""
    from veto.cli.redis_server import RedisServer, free_port

    server = RedisServer(data_dir=workdir / "redis", appendfsync="always").start()
    service: procs.Child | None = None
    try:
        artifacts = workdir / "artifacts"
        env = procs.veto_env(redis_url=server.url, artifacts=artifacts, api_key=API_KEY)
        env = tree_env(tree, env)
        t0 = time.perf_counter()
        args = [server.url, str(artifacts), str(n_items), str(n_users), str(flat_max_items)]
        seeded = subprocess.run(
            [sys.executable, "-c", _SEED, *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if seeded.returncode != 0:
            raise RuntimeError(f"seeding with {tree}'s code failed:\n{seeded.stderr[-2000:]}")
        seed_seconds = time.perf_counter() - t0
        logdir = workdir / "logs"
        port = free_port()
        cmd = [sys.executable, "-m", "veto.cli", "serve", "--port", str(port)]
        cmd += ["--log-level", "warning"]
        # Started in the tree: ``-m`` puts the working directory first on sys.path.
        service = procs.ready(
            procs.start("service", cmd, env=env, logdir=logdir, port=port, cwd=tree)
        )
        yield Stack(
            service=service,
            redis_url=server.url,
            artifacts=artifacts,
            logdir=logdir,
            env=env,
            n_items=n_items,
            n_users=n_users,
            index=seeded.stdout.strip(),
            seed_seconds=round(seed_seconds, 1),
        )
    finally:
        if service is not None:
            service.stop()
        server.stop()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--name", default="", help="result name (default profile_<items>)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=int, default=8, help="sampled window per kind")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--kinds", default="get,post1,post100", help=f"subset of {','.join(KINDS)}")
    p.add_argument("--flat-max-items", type=int, default=50_000)
    p.add_argument(
        "--blocking",
        action="store_true",
        help="let py-spy pause the process for each sample (exact stacks, 2-3x fewer requests)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Profile ``--tree`` and write ``<out-dir>/<name>.json``."""
    args = _parser().parse_args(argv)
    kinds = [KINDS[k.strip()] for k in args.kinds.split(",") if k.strip()]
    tree = args.tree.resolve()
    try:
        py_spy()
    except Skipped as exc:
        print(f"bench.profile: skipped: {exc}", file=sys.stderr)
        return 0
    name = args.name or f"profile_{args.items // 1000}k"
    command = " ".join(["python -m bench.profile", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="veto-profile-") as tmp:
        work = Path(tmp)
        print(f"== {name}: seeding {args.items} items with {tree}'s code", flush=True)
        with tree_stack(
            tree,
            work,
            n_items=args.items,
            n_users=args.users,
            flat_max_items=args.flat_max_items,
        ) as stack:
            refs = {
                "get": procs.bare(
                    "bench.serve:bare_app", env=dict(os.environ), logdir=work, name="bare-get"
                ),
                "post": procs.bare(
                    "bench.ingest:bare_app", env=dict(os.environ), logdir=work, name="bare-post"
                ),
            }
            try:
                figures, details = measure(
                    stack,
                    refs,
                    kinds=kinds,
                    tree=str(tree),
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    rate=args.rate,
                    nonblocking=not args.blocking,
                )
            finally:
                for child in refs.values():
                    child.stop()
    details["wall_seconds"] = round(time.perf_counter() - started, 1)
    path = save(
        name, figures, details=details, command=command, out_dir=args.out_dir, machine_desc=machine
    )
    print(f"   wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
