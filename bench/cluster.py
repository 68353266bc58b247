"""One Redis against a 3-master Redis Cluster, side by side in one run: feedback ingest
(events/s, batches of 100) and GET recommendations (req/s) through one ``veto serve`` on
each, rounds alternated, medians; and the Redis commands each request and each event costs
(INFO commandstats before and after, summed over the masters).

    python -m bench.cluster [--items 10000] [--rounds 3] [--duration 8] [--out FILE]

Both stores run AOF with appendfsync always (what the fault tests and the capacity plan
assume) on this machine, as child processes sharing its cores with the service and the load
generator: the figure says what a cluster costs or buys a replica here, not what 3 machines
would carry.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import procs
from bench.loadgen import GET, POST, Mix, run_mix
from bench.serve import seed_catalog
from veto.cli.redis_cluster import RedisCluster
from veto.cli.redis_server import RedisServer
from veto.connection import connect_url

API_KEY = "bench-key"
USERS = 2000


@contextmanager
def _store(kind: str, work: Path) -> Iterator[tuple[str, list[int]]]:
    """(VETO_REDIS_URL, the masters' ports) of one Redis or a 3-master cluster."""
    if kind == "redis":
        server = RedisServer(data_dir=work / "redis", appendfsync="always").start()
        try:
            yield server.url, [server.port]
        finally:
            server.stop()
    else:
        cluster = RedisCluster(data_dir=work / "cluster", appendfsync="always").start()
        try:
            yield cluster.url, [n.port for n in cluster.nodes]
        finally:
            cluster.stop()


def _calls(ports: list[int]) -> int:
    """Commands executed so far, summed over the masters."""
    total = 0
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            stats: Any = client.info("commandstats")
        finally:
            client.close()
        total += sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    return total


def measure(*, items: int, rounds: int, duration: float, warmup: float) -> dict[str, Any]:
    results: dict[str, Any] = {"items": items, "users": USERS, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="veto-bench-cluster-") as tmp:
        work = Path(tmp)
        with _store("redis", work / "a") as one, _store("cluster", work / "b") as many:
            stacks: dict[str, tuple[procs.Child, list[int]]] = {}
            for kind, (url, ports) in (("redis", one), ("cluster", many)):
                client = connect_url(url, decode=False)
                seed_catalog(
                    work / kind / "artifacts",
                    client,  # type: ignore[arg-type]
                    n_items=items,
                    n_users=USERS,
                    flat_max=200_000,
                )
                client.close()
                env = procs.veto_env(
                    redis_url=url, artifacts=work / kind / "artifacts", api_key=API_KEY
                )
                env["VETO_RESPONSIVENESS_SAMPLE_RATE"] = "0"
                service = procs.serve(env=env, logdir=work / kind / "logs", name=f"serve-{kind}")
                stacks[kind] = (service, ports)
            try:
                post = Mix(post_share=1.0, batch=100, users=USERS, items=items, api_key=API_KEY)
                paths = tuple(f"/v1/users/u{i}/recommendations?k=20" for i in range(USERS))
                get = Mix(get_paths=paths, users=USERS, items=items)
                load = dict(concurrency=16, duration=duration, warmup=warmup)
                for kind in stacks:
                    results[kind] = {"events_per_s": [], "get_per_s": [], "get_p99_ms": []}
                for _ in range(rounds):
                    for kind, (service, ports) in stacks.items():
                        before = _calls(ports)
                        posted = run_mix(service.url, post, **load)
                        mid = _calls(ports)
                        got = run_mix(service.url, get, **load)
                        after = _calls(ports)
                        w_post = posted.window(kind=POST)
                        w_get = got.window(kind=GET)
                        row = results[kind]
                        row["events_per_s"].append(round(w_post["rps"] * 100, 1))
                        row["get_per_s"].append(round(w_get["rps"], 1))
                        row["get_p99_ms"].append(w_get["p99_ms"])
                        # Every request of the run (warm-up included) against every command.
                        row.setdefault("commands_per_event", []).append(
                            round((mid - before) / max(1, len(posted.ok) * 100), 2)
                        )
                        row.setdefault("commands_per_get", []).append(
                            round((after - mid) / max(1, len(got.ok)), 2)
                        )
            finally:
                for service, _ in stacks.values():
                    service.stop()
    for kind in ("redis", "cluster"):
        row = results[kind]
        row["median"] = {k: statistics.median(v) for k, v in row.items() if isinstance(v, list)}
    results["ratio_cluster_to_redis"] = {
        k: round(results["cluster"]["median"][k] / results["redis"]["median"][k], 3)
        for k in ("events_per_s", "get_per_s")
    }
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=Path("bench/results/cluster.json"))
    args = p.parse_args()
    results = measure(
        items=args.items, rounds=args.rounds, duration=args.duration, warmup=args.warmup
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("redis", "cluster", "ratio_cluster_to_redis")}))


if __name__ == "__main__":
    main()
