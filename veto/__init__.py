"""The contract the service and the trainer share; imports no fastapi, torch, subprocess or
argparse (``tests/veto/test_layout.py``). Its public surface, one module per noun:

    errors      the error hierarchy and the commands' exit-code policy
    ids         the id rules of users and items
    keys        Redis key names (hash-tagged per user partition) and the stream partitions
    settings    every VETO_* variable: CommonSettings, ServiceSettings, TrainerSettings
    events      EventType, FeedbackEvent, HistoryEntry, Interaction
    registry    the current-version pointer and its notice
    versions    the versions on disk as an operator sees them, and the rule for publishing one
    artifacts   the model-version format: write_version, load_version, Manifest, Watermark
    catalog     ItemIds, Categories: a version's catalog in compact arrays
    items       the catalog in Redis: which items exist, the write script, bootstrap seeding
    search      nearest: the item search the service serves and the trainer's recall measures
    encoder     UserEncoder, the NumPy user tower the service runs
    ranking     adjust_scores, the scoring core the service and ``veto eval`` share
    connection  Redis clients (one Redis or a cluster) of every process, from the URL
    redis_url   VETO_REDIS_URL parsed: one Redis, or a Redis Cluster's startup nodes
    partitions  the deployment's partition count, recorded in Redis and enforced at start

``veto.cli`` (the ``veto`` command and the one-machine stack) is not part of the contract:
it imports the processes, and nothing imports it.
"""

__all__ = [
    "artifacts",
    "catalog",
    "connection",
    "encoder",
    "errors",
    "events",
    "ids",
    "items",
    "keys",
    "partitions",
    "ranking",
    "redis_url",
    "registry",
    "search",
    "settings",
    "versions",
]
