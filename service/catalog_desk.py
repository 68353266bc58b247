"""The catalog API's logic between the routes and Redis: writes (each one transaction, all of
a batch or nothing), withdrawals, and an item as the catalog and the served model see it."""

from __future__ import annotations

from service.catalog_store import CatalogStore
from service.errors import NotFound
from service.model_holder import ModelHolder
from service.schemas import Item, ItemBatch, ItemFields, ItemsWritten
from veto import items
from veto.errors import TooLarge


class CatalogDesk:
    """Creates, updates, withdraws and describes catalog items."""

    def __init__(self, holder: ModelHolder, store: CatalogStore, *, max_batch: int) -> None:
        self._holder = holder
        self._store = store
        self._max_batch = max_batch

    async def put(self, item_id: str, fields: ItemFields) -> Item:
        """Create or update one item; the item as it is now."""
        await self._store.write([items.put(item_id, fields.given())])
        return await self.get(item_id)

    async def put_many(self, batch: ItemBatch) -> ItemsWritten:
        """Create or update every item of a batch in one transaction (later entries of the
        same item apply on top of earlier ones); TooLarge above the limit, nothing written."""
        n = len(batch.items)
        if n > self._max_batch:
            raise TooLarge(
                f"{n} items in one batch; the limit is {self._max_batch}",
                details={"items": n, "max_batch": self._max_batch},
            )
        ops = [items.put(item.item_id, item.given()) for item in batch.items]
        generation = await self._store.write(ops)
        assert generation is not None  # only a delete can be refused
        return ItemsWritten(written=n, generation=generation)

    async def delete(self, item_id: str) -> None:
        """Withdraw an item: never served again, feedback on it refused; NotFound when it
        does not exist (``veto.items``' rule)."""
        model = self._holder.current
        known = model is not None and model.version.item_ids.get(item_id) is not None
        if await self._store.write([items.delete(item_id, known=known)]) is None:
            raise NotFound(f"unknown item {item_id[:40]!r}")

    async def get(self, item_id: str) -> Item:
        """The item as the catalog has it (or, without a record, as the served model has it)
        and whether the served model has a learned vector for it: a row that is not one of
        the version's cold rows (an untrained cold-start vector); NotFound if it does not
        exist."""
        record, withheld = await self._store.record(item_id)
        model = self._holder.current
        row = None if model is None else model.version.item_ids.get(item_id)
        number = None if model is None else model.number
        learned = model is not None and row is not None and row not in model.version.cold_rows
        state = (
            items.DELETED if withheld == items.DELETED else None if record is None else items.LIVE
        )
        if not items.exists(state, in_model=row is not None):
            raise NotFound(f"unknown item {item_id[:40]!r}")
        if record is None:
            assert model is not None and row is not None
            category = model.version.categories[row]
            return Item(
                item_id=item_id,
                category=category,
                labels=[],
                hidden=False,
                learned=learned,
                model_version=number,
            )
        return Item(
            item_id=item_id,
            category=record.category,
            labels=record.labels,
            hidden=record.hidden,
            learned=learned,
            model_version=number,
        )
