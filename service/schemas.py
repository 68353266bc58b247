"""Request and response bodies of the HTTP API v1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from pydantic_core import to_json

from veto.ids import ID_PATTERN

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
MAX_LABELS = 32
# Categories and labels are values in Redis, never part of a key: any text, bounded.
Category = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# "withdraw" takes back the user's like or dislike of the item (veto.events.EventType).
EventTypeName = Literal["like", "dislike", "click", "skip", "withdraw"]


class ScoredItem(BaseModel):
    item_id: str
    score: float


class Recommendations(BaseModel):
    user_id: str
    items: list[ScoredItem]
    model_version: int
    request_id: str
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class RecommendationsBody:
    """A ``Recommendations`` answer as the recommender computes it: its fields come from
    validated input and the served model, so the answer is serialised once, without being
    validated again (``Recommendations`` documents its shape; a test checks they agree)."""

    user_id: str
    item_ids: list[str]
    scores: list[float]
    model_version: int
    request_id: str
    degraded: bool

    def to_json(self) -> bytes:
        return to_json(
            {
                "user_id": self.user_id,
                "items": [
                    {"item_id": item, "score": score}
                    for item, score in zip(self.item_ids, self.scores, strict=True)
                ],
                "model_version": self.model_version,
                "request_id": self.request_id,
                "degraded": self.degraded,
            }
        )


class SimilarItems(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: int


class FeedbackEventIn(BaseModel):
    """One event as a client sends it; the server fills a missing event id and timestamp."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id | None = None
    user_id: Id
    item_id: Id
    type: EventTypeName
    timestamp: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class FeedbackBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[FeedbackEventIn], Field(min_length=1)]


class FeedbackResult(BaseModel):
    accepted: int
    duplicates: int


class ItemFields(BaseModel):
    """A catalog item's metadata as a client writes it. Fields left out keep their value
    (an item created without them has no category, no labels, and is not hidden); a null
    category clears it (the model version's category then applies)."""

    model_config = ConfigDict(extra="forbid")

    category: Category | None = None
    labels: Annotated[list[Label], Field(max_length=MAX_LABELS)] = Field(default_factory=list)
    hidden: StrictBool = False

    def given(self) -> dict[str, Any]:
        """The fields the client sent, as ``veto.items.put`` takes them."""
        given = self.model_fields_set & ItemFields.model_fields.keys()  # not a batch's item_id
        return {name: getattr(self, name) for name in sorted(given)}


class ItemIn(ItemFields):
    """One item of a batch upsert."""

    item_id: Id


class ItemBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[ItemIn], Field(min_length=1)]


class Item(BaseModel):
    """A catalog item, and whether the served model version has learned a vector for it."""

    item_id: str
    category: str | None
    labels: list[str]
    hidden: bool
    # True when the served version has a row for the item that has been trained on feedback;
    # False without a row, and for a row still carrying its untrained cold-start vector.
    learned: bool
    model_version: int | None


class ItemsWritten(BaseModel):
    written: int
    generation: int  # the catalog generation after the write


class Health(BaseModel):
    status: str
    model_version: int | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """The one JSON error shape of every non-2xx answer (documented in the OpenAPI spec)."""

    error: ErrorInfo


class HeldEntry(BaseModel):
    """One entry of a user's history. ``type`` "withdrawn": a like or dislike the user took
    back (neutral: no longer an input of their recommendations)."""

    item_id: str
    type: str
    timestamp: float


class UserData(BaseModel):
    """A page of what Veto holds about a user: history newest first, then the liked items,
    then the disliked ones (each sorted); ``next_cursor`` None on the last page."""

    user_id: str
    history: list[HeldEntry]
    liked: list[str]
    disliked: list[str]
    next_cursor: str | None


class Erased(BaseModel):
    """What an erasure deleted: all 0 when Veto held nothing of the user."""

    user_id: str
    keys_deleted: int
    stream_entries_deleted: int
    dedupe_markers_deleted: int


# The admin API (``service.admin_routes``): what the console's model and live panels read.
MAX_VERSION = 99_999_999  # version directories are named v + 8 digits


class ServedModel(BaseModel):
    """The model version this replica serves, from its manifest, and when it swapped it in."""

    version: int
    parent: int | None
    created_at: float
    n_items: int
    dim: int
    index_type: str
    # The ingest time of the newest feedback event the version was trained on (None: a
    # version trained on no live feedback, such as a bootstrap one).
    watermark_ingest_time: float | None
    swapped_at: float | None
    # swapped_at - watermark_ingest_time: how long the newest feedback it learned from took
    # to reach this replica (None without a watermark).
    feedback_to_model_lag_seconds: float | None


class ModelStatus(BaseModel):
    """What this replica serves, what the pointer says, and whether Redis answers."""

    served: ServedModel | None  # None while starting: no version loaded yet
    published: int | None  # the pointer; None when none was published or Redis is down
    redis: Literal["ok", "unavailable"]


class VersionInfo(BaseModel):
    """One version on disk (``veto versions list``); ``error`` when its manifest is
    unreadable."""

    version: int
    parent: int | None
    created_at: float | None
    n_items: int | None
    index_type: str | None
    watermark_ingest_time: float | None
    published: bool  # the pointer names it
    served: bool  # this replica serves it
    error: str | None


class Versions(BaseModel):
    versions: list[VersionInfo]  # oldest first
    published: int | None


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Field(ge=1, le=MAX_VERSION, strict=True)]


class Published(BaseModel):
    published: int
    previous: int | None  # the pointer before
    served: int | None  # what this replica serves after its reload check


class LivePoint(BaseModel):
    """One interval of the live window: rates over it, what happened in it."""

    at: float  # end of the interval, wall-clock seconds
    seconds: float
    api_requests_per_second: float
    recommendations_per_second: float
    feedback_per_second: float
    latency_p50_seconds: float | None  # of the recommendations route; None without requests
    latency_p99_seconds: float | None
    responsiveness_mean: float | None  # mean similar-share change of the dislikes measured
    responsiveness_samples: int
    dislikes_per_second: float
    degraded_per_second: float
    disliked_served_total: int  # the counter at the end of the interval (must stay 0)


class LiveTotals(BaseModel):
    """Counters since the process started."""

    disliked_served: int
    withheld_served: int
    degraded_responses: int
    responsiveness_samples: int
    responsiveness_mean: float | None


class LiveSeries(BaseModel):
    interval_seconds: float
    window_seconds: float
    points: list[LivePoint]  # oldest first
    totals: LiveTotals
