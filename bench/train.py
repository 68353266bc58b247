"""Trainer benchmarks for ``bench.run`` (``make bench-train``): training throughput and
end-to-end freshness.

Throughput: ``trainer.learn.fit`` on a synthetic world (``trainer.data.synthetic``) with N
items, batch 1024, dim 64, L 50, 2 torch threads; examples/s of the last epoch (the first includes
warm-up). Users get 60 events each so most histories are full (50).

Data-parallel throughput (``ddp``): the same fit with 1 and N ranks (``trainer.learn.parallel``,
gloo over loopback), each configuration in fresh spawned processes, one after the other in the
same run; the machine's ``threads`` are shared, max(1, threads // N) per rank, and one process
with one thread is measured as well (what a core does alone). Examples/s of the whole group
per epoch, the median of epochs 2..E (the first warms up).

Freshness: Redis, ``veto serve`` and ``veto train`` as subprocesses on a catalog bootstrapped
with N items. Per trial: POST a dislike to /v1/feedback, then poll the user's
recommendations until ``model_version`` is a version whose manifest watermark includes the
event's stream id. Trials are spaced by more than the trainer's interval (an idle
trainer); a first warm-up trial is not counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import wait_ready
from trainer.data.synthetic import make_world
from trainer.learn.config import TrainConfig
from trainer.learn.fit import fit, follow
from trainer.learn.parallel import DataParallel, Rank
from trainer.online.stream import stream_id_key
from veto.artifacts import read_manifest, version_dir
from veto.cli.redis_server import RedisServer, free_port
from veto.keys import UserKeys


def throughput(n_items: int, *, users: int, events_per_user: int, epochs: int) -> dict[str, Any]:
    """Examples/s of fit on a synthetic world with ``n_items`` items."""
    world = make_world(
        n_items=n_items, n_users=users, n_categories=50, events_per_user=events_per_user
    )
    config = TrainConfig(dim=64, history_len=50, batch_size=1024, epochs=epochs, threads=2)
    started = time.perf_counter()
    result = fit(world.interactions, item_ids=world.item_ids, config=config)
    total = time.perf_counter() - started
    per_epoch = [round(h["examples_per_second"]) for h in result.loss_history]
    return {
        "n_items": n_items,
        "examples_per_epoch": int(result.loss_history[0]["examples"]),
        "epochs": epochs,
        "examples_per_second_by_epoch": per_epoch,
        "examples_per_second": per_epoch[-1],
        "fit_seconds_total": round(total, 2),
        "batch_size": 1024,
        "dim": 64,
        "history_len": 50,
        "n_sampled": config.n_sampled,
    }


def _fit_rank(
    rank: int, world: int, threads: int, port: int, spec: dict[str, Any], results: Any
) -> None:
    """One rank of a ``parallel_throughput`` run (a spawned process); rank 0 fits."""
    parallel = None
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        parallel = DataParallel.join(Rank(rank, world), timeout=600)
    try:
        if rank:
            assert parallel is not None
            follow(parallel)
            return
        synthetic = make_world(
            n_items=spec["n_items"],
            n_users=spec["users"],
            n_categories=50,
            events_per_user=spec["events_per_user"],
        )
        config = TrainConfig(
            dim=64,
            history_len=50,
            batch_size=1024,
            epochs=spec["epochs"],
            threads=threads,
        )
        started = time.perf_counter()
        result = fit(
            synthetic.interactions, item_ids=synthetic.item_ids, config=config, parallel=parallel
        )
        results.put(
            {
                "by_epoch": [round(h["examples_per_second"]) for h in result.loss_history],
                "examples_per_epoch": int(result.loss_history[0]["examples"]),
                "last_loss": round(result.loss_history[-1]["total"], 4),
                "fit_seconds_total": round(time.perf_counter() - started, 2),
                "threads_per_rank": config.threads,
            }
        )
        if parallel is not None:
            parallel.stop()
    finally:
        if parallel is not None:
            parallel.close()


def parallel_throughput(
    n_items: int,
    *,
    nprocs: Sequence[int],
    users: int,
    events_per_user: int,
    epochs: int,
    threads: int = 2,
) -> list[dict[str, Any]]:
    """Examples/s of fit with each rank count in ``nprocs`` (and one process with one
    thread), one after the other."""
    import torch.multiprocessing as mp

    from veto.cli.redis_server import free_port

    spec = {
        "n_items": n_items,
        "users": users,
        "events_per_user": events_per_user,
        "epochs": epochs,
        "threads": threads,
    }
    runs = [(n, max(1, threads // n)) for n in nprocs]
    if threads > 1 and (1, 1) not in runs:
        runs.insert(1, (1, 1))
    rows = []
    for world, per_rank in runs:
        context = mp.get_context("spawn")
        results = context.SimpleQueue()
        load_before = os.getloadavg()
        mp.start_processes(
            _fit_rank,
            args=(world, per_rank, free_port(), spec, results),
            nprocs=world,
            start_method="spawn",
            join=True,
        )
        out = results.get()
        by_epoch = out["by_epoch"]
        rows.append(
            {
                "n_items": n_items,
                "ranks": world,
                **out,
                "examples_per_second": round(statistics.median(by_epoch[1:] or by_epoch)),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
        print(
            f"  {world} rank(s) x {per_rank} thread(s): {rows[-1]['examples_per_second']} "
            f"examples/s {by_epoch}",
            flush=True,
        )
    return rows


def _stream_id(client: redis.Redis, user: str, event_id: str, partitions: int) -> str:
    """The stream id of ``event_id`` in the user's partition (the newest entries first)."""
    stream = UserKeys(user, partitions).stream
    for _ in range(50):
        for entry_id, fields in client.xrevrange(stream, count=100):
            if fields.get("event_id") == event_id:
                return str(entry_id)
        time.sleep(0.02)
    raise RuntimeError(f"event {event_id} not found in {stream}")


def _includes(artifacts: Path, version: int, partition: int, stream_id: str) -> bool:
    watermark = read_manifest(version_dir(artifacts, version)).watermark
    seen = watermark.stream_ids.get(str(partition))
    return seen is not None and stream_id_key(seen) >= stream_id_key(stream_id)


def freshness(n_items: int, *, trials: int, interval: float, workdir: Path) -> dict[str, Any]:
    """Feedback-to-served-model lag over ``trials`` dislikes."""
    partitions = 8
    server = RedisServer(data_dir=workdir / "redis")
    server.start()
    port = free_port()
    env = {
        **os.environ,
        "VETO_REDIS_URL": server.url,
        "VETO_ARTIFACTS_DIR": str(workdir / "artifacts"),
        "VETO_STREAM_PARTITIONS": str(partitions),
        "VETO_PORT": str(port),
        "VETO_INTERVAL_SECONDS": str(interval),
    }
    cli = [sys.executable, "-m", "veto.cli"]
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"n_items": n_items, "interval_seconds": interval}
    try:
        started = time.perf_counter()
        subprocess.run(
            [*cli, "bootstrap", "--items", str(n_items), "--epochs", "1", "--quiet"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result["bootstrap_seconds"] = round(time.perf_counter() - started, 1)
        logs = [open(workdir / f"{name}.log", "wb") for name in ("serve", "train")]  # noqa: SIM115
        procs.append(subprocess.Popen([*cli, "serve"], env=env, stdout=logs[0], stderr=logs[0]))
        procs.append(
            subprocess.Popen(
                [*cli, "train", "--metrics-port", "0"], env=env, stdout=logs[1], stderr=logs[1]
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", timeout=300)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        http = httpx.Client(base_url=url, timeout=30.0)
        lags: list[float] = []
        # Trial -1 warms up (the trainer may still be importing torch): not counted.
        for trial in range(-1, trials):
            user, item = f"u{trial + 1}", f"i{((trial + 1) * 7919) % n_items}"
            event_id = f"bench-{time.time_ns()}"
            body = {"events": [{"event_id": event_id, "user_id": user, "item_id": item,
                                "type": "dislike"}]}  # fmt: skip
            t0 = time.perf_counter()
            http.post("/v1/feedback", json=body).raise_for_status()
            stream_id = _stream_id(client, user, event_id, partitions)
            partition = UserKeys(user, partitions).partition
            checked: dict[int, bool] = {}
            while time.perf_counter() - t0 < 600:
                version = int(http.get(f"/v1/users/{user}/recommendations").json()["model_version"])
                if version not in checked:
                    checked[version] = _includes(
                        workdir / "artifacts", version, partition, stream_id
                    )
                if checked[version]:
                    lag = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("no version trained on the dislike was served within 600 s")
            print(f"  trial {trial}: {lag:.2f} s", flush=True)
            if trial >= 0:
                lags.append(lag)
            time.sleep(interval + 1.0)
        client.close()
        http.close()
        result.update(
            trials=trials,
            lags_seconds=[round(x, 3) for x in lags],
            p50_seconds=round(statistics.median(lags), 3),
            max_seconds=round(max(lags), 3),
        )
        return result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
