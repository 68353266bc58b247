"""Feedback intake: a parsed batch checked against the catalog and the clock, turned into
``FeedbackEvent``s. Pure: the model snapshot, the items' catalog states and ``now`` are
passed in. An item exists by ``veto.items``' rule: the catalog has it (hidden or not), or the
served model has it and the catalog did not delete it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping

from service.errors import FieldError, invalid_fields
from service.model_holder import ServingModel
from service.schemas import FeedbackBatch
from veto import items
from veto.errors import InvalidInput, TooLarge, UnknownItem
from veto.events import EventType, FeedbackEvent


def _new_event_id() -> str:
    return uuid.uuid4().hex


def derived_event_id(user_id: str, item_id: str, kind: str, timestamp: float) -> str:
    """The id of an event sent without one but with its own timestamp: the same event sent
    again (a client's retry after a timeout or a 503) gets the same id, so it is a duplicate
    and not a second event. An event with neither gets a fresh id each time (README)."""
    digest = hashlib.blake2b(
        "\x1f".join((user_id, item_id, kind, repr(timestamp))).encode(), digest_size=16
    )
    return "d" + digest.hexdigest()


def to_events(
    batch: FeedbackBatch,
    model: ServingModel,
    *,
    catalog: Mapping[str, str | None],
    now: float,
    max_batch: int,
    max_skew_seconds: float,
    new_id: Callable[[], str] = _new_event_id,
) -> list[FeedbackEvent]:
    """Validated events of a batch, or an error naming every bad event (nothing is kept).
    ``catalog``: each item's catalog state (``veto.items``), None where it has no word."""
    n = len(batch.events)
    if n > max_batch:
        raise TooLarge(
            f"{n} events in one batch; the limit is {max_batch}",
            details={"events": n, "max_batch": max_batch},
        )
    errors: list[FieldError] = []
    unknown_only = True
    rows = model.version.item_ids.rows([ev.item_id for ev in batch.events]).tolist()
    for i, (ev, row) in enumerate(zip(batch.events, rows, strict=True)):
        # A withdraw only takes state away: accepted for an item deleted since the decision.
        if ev.type != "withdraw" and not items.exists(catalog.get(ev.item_id), in_model=row >= 0):
            errors.append(_error(i, "item_id", f"unknown item {ev.item_id!r}"))
        if ev.timestamp is not None and ev.timestamp > now + max_skew_seconds:
            unknown_only = False
            errors.append(_error(i, "timestamp", "timestamp is in the future"))
    if errors:
        kind = UnknownItem if unknown_only else InvalidInput
        raise invalid_fields(
            f"{len(errors)} invalid event(s); nothing was written", errors, kind=kind
        )
    return [
        FeedbackEvent(
            event_id=ev.event_id
            or (
                new_id()
                if ev.timestamp is None
                else derived_event_id(ev.user_id, ev.item_id, ev.type, ev.timestamp)
            ),
            user_id=ev.user_id,
            item_id=ev.item_id,
            type=EventType.parse(ev.type),
            timestamp=ev.timestamp if ev.timestamp is not None else now,
            ingest_time=now,
        )
        for ev in batch.events
    ]


def _error(index: int, field: str, message: str) -> FieldError:
    return FieldError(location="body", index=index, field=field, message=message)
