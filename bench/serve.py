"""GET recommendations throughput and latency, next to a bare FastAPI endpoint in the same run.

    python -m bench.serve            # 100k items (dim 64), 10k users with histories
    python -m bench.serve --quick    # 20k items, 2k users, shorter runs

Starts a real Redis (temp dir), writes a model version, fills the users' histories, runs
``veto serve`` and a bare FastAPI app (fixed 10-item list, same response shape) each in a
uvicorn subprocess with one worker, and drives each in turn from a load-generator process at
32 concurrent connections. Prints req/s, p50/p99 and the ratio service/bare, and writes
``bench/results/serve.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from fastapi import FastAPI

from bench.common import LoadResult, machine, run_load, wait_ready, write_json
from veto import registry
from veto.artifacts import Watermark, write_version
from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES, EventType, HistoryEntry
from veto.keys import UserKeys
from veto.redis_server import RedisServer, free_port
from veto.synthetic import make_world

RESULTS = Path(__file__).parent / "results" / "serve.json"
PARTITIONS = 8
HISTORY_LEN = 50


def bare_app() -> FastAPI:
    """The reference: the same route and response shape, a fixed list, no work."""
    app = FastAPI()
    items = [{"item_id": f"i{n}", "score": 1.0 - n / 100} for n in range(10)]

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(user_id: str, k: int = 10) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "items": items,
            "model_version": 1,
            "request_id": "0" * 32,
            "degraded": False,
        }

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller catalog, shorter runs")
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--duration", type=float, default=None, help="measured seconds per target")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--flat-max-items",
        type=int,
        default=50_000,
        help="flat index up to this many items, IVF above (the artifact format's threshold)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def _seed(root: Path, client: redis.Redis, *, n_items: int, n_users: int, flat_max: int) -> str:
    """Write version 1 and every user's history, liked and disliked sets; return index type."""
    world = make_world(
        n_items=n_items, n_users=n_users, n_categories=50, dim=64, events_per_user=20, seed=1
    )
    encoder = UserEncoder.initial(dim=64, history_len=HISTORY_LEN, n_types=N_EVENT_TYPES)
    path = write_version(
        root,
        version=1,
        parent=None,
        item_ids=world.item_ids,
        categories=world.categories,
        vectors=world.item_vectors,
        encoder=encoder,
        popular=world.item_ids[:100],
        loss={"objective": "bench"},
        watermark=Watermark(),
        flat_max_items=flat_max,
    )
    pipe = client.pipeline(transaction=False)
    for n, it in enumerate(world.interactions):
        uk = UserKeys(it.user_id, PARTITIONS)
        pipe.lpush(uk.history, HistoryEntry(it.item_id, it.type, it.timestamp).encode())
        if it.type == EventType.LIKE:
            pipe.sadd(uk.liked, it.item_id)
        elif it.type == EventType.DISLIKE:
            pipe.sadd(uk.disliked, it.item_id)
        if n % 20_000 == 19_999:
            pipe.execute()
    pipe.execute()
    registry.publish(client, 1)
    return str(path.name) + ":" + _index_type(path)


def _index_type(path: Path) -> str:
    import json

    return str(json.loads((path / "manifest.json").read_text())["index_type"])


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _show(name: str, r: LoadResult) -> None:
    print(
        f"{name:<8} {r.rps:>9.1f} req/s   p50 {r.p50_ms:>7.2f} ms   p99 {r.p99_ms:>7.2f} ms"
        f"   requests {r.requests}   errors {r.errors}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    n_items = args.items or (20_000 if args.quick else 100_000)
    n_users = args.users or (2_000 if args.quick else 10_000)
    duration = args.duration or (5.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory(prefix="veto-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(data_dir=tmp / "redis").start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            client = redis.Redis.from_url(server.url)
            t0 = time.perf_counter()
            index = _seed(
                tmp / "artifacts", client, n_items=n_items, n_users=n_users,
                flat_max=args.flat_max_items,
            )  # fmt: skip
            print(f"seeded {n_items} items, {n_users} users ({index}) in "
                  f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
            env = {
                **os.environ,
                "VETO_REDIS_URL": server.url,
                "VETO_ARTIFACTS_DIR": str(tmp / "artifacts"),
                "VETO_STREAM_PARTITIONS": str(PARTITIONS),
                "VETO_HISTORY_LEN": str(HISTORY_LEN),
            }
            svc_port, bare_port = free_port(), free_port()
            svc_cmd = [sys.executable, "-m", "veto.cli", "serve", "--port", str(svc_port),
                       "--log-level", "warning"]  # fmt: skip
            bare_cmd = [sys.executable, "-m", "uvicorn", "bench.serve:bare_app", "--factory",
                        "--port", str(bare_port), "--workers", "1", "--no-access-log",
                        "--log-level", "warning"]  # fmt: skip
            procs = [_start(svc_cmd, env), _start(bare_cmd, env)]
            wait_ready(f"http://127.0.0.1:{svc_port}/readyz")
            wait_ready(f"http://127.0.0.1:{bare_port}/readyz")
            rng = np.random.default_rng(0)
            users = rng.integers(n_users, size=5000)
            paths = [f"/v1/users/u{u}/recommendations?k=10" for u in users]
            load = dict(concurrency=args.concurrency, duration=duration, warmup=args.warmup)
            service = run_load(f"http://127.0.0.1:{svc_port}", paths, **load)  # type: ignore[arg-type]
            _show("service", service)
            bare = run_load(f"http://127.0.0.1:{bare_port}", paths, **load)  # type: ignore[arg-type]
            _show("bare", bare)
        finally:
            for proc in procs:
                _stop(proc)
            server.stop()
    ratio = round(service.rps / bare.rps, 3) if bare.rps else 0.0
    print(f"ratio service/bare: {ratio:.3f}  (aim >= 0.6)")
    write_json(
        args.out,
        {
            "service": service.__dict__,
            "reference": bare.__dict__,
            "ratio": ratio,
            "setup": {
                "items": n_items,
                "users": n_users,
                "dim": 64,
                "history_len": HISTORY_LEN,
                "index": index,
                "concurrency": args.concurrency,
                "duration_s": duration,
                "warmup_s": args.warmup,
            },
            "machine": machine(),
            "command": " ".join(["python -m bench.serve", *(argv or sys.argv[1:])]),
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
