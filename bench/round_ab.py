"""One trainer round's duration at N items, for the source tree given (A/B between checkouts).

    python bench/round_ab.py /path/to/checkout 100000 8 1000   # tree, items, rounds, events

Same procedure in every tree: bootstrap a synthetic catalog (1 epoch, history 50) into a
fresh embedded Redis, then R rounds of E events each, written as the service writes them
(stream entry + history), each round one ``Trainer.run_once`` in this process. Round 1 loads
the version; rounds 2..R are what a running trainer pays. Prints one JSON line. Run the trees
alternately, more than once: the machine is shared. Trees from before the layout redesign
(``trainer/loop.py``) are measured through their own module names.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main(tree: str, n_items: int, rounds: int, events: int) -> dict[str, Any]:
    sys.path.insert(0, tree)
    os.chdir(tree)
    import redis
    from prometheus_client import CollectorRegistry

    from veto.events import EventType, FeedbackEvent, HistoryEntry
    from veto.keys import UserKeys

    try:
        from trainer.online import bootstrap
        from trainer.online.loop import Trainer
        from trainer.online.metrics import TrainerMetrics
        from veto.cli.redis_server import RedisServer
        from veto.settings import TrainerSettings, load_settings

        def settings() -> Any:
            return load_settings(TrainerSettings)
    except ImportError:  # a checkout from before the layout redesign
        from trainer.loop import Trainer  # type: ignore[no-redef]
        from trainer.metrics import TrainerMetrics  # type: ignore[no-redef]
        from trainer.settings import TrainerSettings  # type: ignore[no-redef]
        from veto.redis_server import RedisServer  # type: ignore[no-redef]

        from trainer import bootstrap  # type: ignore[no-redef]

        def settings() -> Any:
            return TrainerSettings()

    work = Path(tempfile.mkdtemp())
    server = RedisServer(data_dir=work / "redis")
    server.start()
    os.environ.update(
        VETO_HISTORY_LEN="50",
        VETO_REDIS_URL=server.url,
        VETO_ARTIFACTS_DIR=str(work / "artifacts"),
        VETO_STREAM_PARTITIONS="8",
        VETO_METRICS_PORT="0",
        VETO_KEEP_VERSIONS="3",
    )
    try:
        started = time.perf_counter()
        argv = ["--dataset", "synthetic", "--items", str(n_items), "--epochs", "1", "--quiet"]
        assert bootstrap.main(argv) == 0
        boot = time.perf_counter() - started
        client = redis.Redis.from_url(server.url, decode_responses=True)
        trainer = Trainer(settings(), client, metrics=TrainerMetrics(CollectorRegistry()))
        rng = random.Random(0)
        users = [f"u{i}" for i in range(max(500, n_items // 20))]
        out = []
        for r in range(rounds):
            pipe = client.pipeline(transaction=False)
            for k in range(events):
                user, item = rng.choice(users), f"i{rng.randrange(n_items)}"
                kind = EventType.LIKE if rng.random() < 0.7 else EventType.DISLIKE
                now = time.time()
                event = FeedbackEvent(
                    event_id=f"e{r}-{k}",
                    user_id=user,
                    item_id=item,
                    type=kind,
                    timestamp=now,
                    ingest_time=now,
                )
                keys = UserKeys(user, 8)
                pipe.xadd(keys.stream, event.to_fields())  # type: ignore[arg-type]
                pipe.lpush(keys.history, HistoryEntry(item, kind, now).encode())
                pipe.ltrim(keys.history, 0, 49)
            pipe.execute()
            report = trainer.run_once(max_events=100_000, first_wait=0.1)
            out.append((report.seconds, report.examples))
        steady = out[1:]
        return {
            "tree": tree,
            "n_items": n_items,
            "events_per_round": events,
            "bootstrap_seconds": round(boot, 1),
            "first_round_seconds": round(out[0][0], 3),
            "round_seconds_median": round(statistics.median(s for s, _ in steady), 3),
            "examples_per_round": steady[0][1],
            "examples_per_round_second_median": round(statistics.median(e / s for s, e in steady)),
            "rounds": [round(s, 3) for s, _ in out],
        }
    finally:
        server.stop()


if __name__ == "__main__":
    tree, items, rounds, events = sys.argv[1], *map(int, sys.argv[2:5])
    print(json.dumps(main(tree, items, rounds, events)))
