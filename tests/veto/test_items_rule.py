"""``veto.items.exists``, the one rule of which items exist (feedback intake and the item
API both ask it): a catalog record makes an item exist, a tombstone unmakes it whatever the
model has, and without the catalog's word the served model decides."""

from __future__ import annotations

import pytest

from veto import items


@pytest.mark.parametrize(
    ("state", "in_model", "expected"),
    [
        (None, True, True),  # a deployment bootstrapped before the catalog
        (None, False, False),  # unknown everywhere
        (items.LIVE, False, True),  # a new item: feedback before any version has it
        (items.HIDDEN, False, True),  # hidden still exists (never served)
        (items.HIDDEN, True, True),
        (items.LIVE, True, True),
        (items.DELETED, True, False),  # the tombstone wins over the model's vector
        (items.DELETED, False, False),
    ],
)
def test_which_items_exist(state: str | None, in_model: bool, expected: bool) -> None:
    assert items.exists(state, in_model=in_model) is expected
