"""A dataset as every trainer command sees it, whatever file format it came from."""

from __future__ import annotations

from dataclasses import dataclass

from veto.events import Interaction


@dataclass(frozen=True)
class Dataset:
    """A catalog and its interactions (oldest first)."""

    name: str
    item_ids: list[str]  # the catalog
    categories: list[str | None]  # aligned with item_ids; None if unknown
    interactions: list[Interaction]  # oldest first
    has_timestamps: bool  # False where the source has no real timestamps (file order used)

    @property
    def user_ids(self) -> list[str]:
        """Users in order of their first interaction."""
        return list(dict.fromkeys(x.user_id for x in self.interactions))
