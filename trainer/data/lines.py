"""Reader of the ``user item item …`` per-line format many papers ship their splits in.

One user per line, whitespace-separated, no header: the user id, then the ids of the items
the user interacted with (e.g. the LightGCN / NGCF ``train.txt`` and ``test.txt``). The
format carries positive interactions only, so every item is a like; it has no times, so file
order is the order (``has_timestamps=False``). An empty line is skipped and a line with a
user id alone is a user without items (it contributes nothing). A user may appear on more
than one line; the events follow each other in file order. Plain or gzip. No categories; the
catalog is every item of the file, in order of first appearance.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.dataset import Dataset
from trainer.data.textfile import check_dataset_id, open_lines, require_file
from veto.errors import DatasetError
from veto.events import EventType, Interaction


def load_lines(path: Path) -> Dataset:
    """A ``user item item …`` file: every listed item a like of the line's user."""
    if path.is_dir():
        # Papers ship train.txt and test.txt side by side: which one is meant must be said.
        raise DatasetError("expected a file such as train.txt, not a directory", path=str(path))
    require_file(path)
    items: dict[str, None] = {}
    out: list[Interaction] = []
    for number, line in open_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        user = check_dataset_id(tokens[0], kind="user", path=path, line=number)
        for token in tokens[1:]:
            item = check_dataset_id(token, kind="item", path=path, line=number)
            items.setdefault(item, None)
            # File order stands in for time: the n-th event gets timestamp n.
            out.append(Interaction(user, item, EventType.LIKE, float(len(out))))
    if not out:
        raise DatasetError(
            "no interactions: every line is empty or a user id alone", path=str(path)
        )
    return Dataset(
        name="lines",
        item_ids=list(items),
        categories=[None] * len(items),
        interactions=out,
        has_timestamps=False,
    )
