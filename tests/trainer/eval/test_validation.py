"""``veto eval --validation``: settings are chosen on a slice of the training half; the test
half is never read."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from trainer.data.load import dataset_of
from trainer.data.synthetic import make_world
from trainer.eval.data import EvalData, split_for_seed
from trainer.eval.options import EvalOptions


@pytest.fixture
def data() -> EvalData:
    return EvalData.of(dataset_of(make_world(n_items=60, n_users=40, events_per_user=20, seed=3)))


@pytest.mark.parametrize("protocol", ["random", "temporal"])
def test_the_validation_split_is_cut_from_the_training_half_only(
    data: EvalData, tmp_path: Path, protocol: str
) -> None:
    options = EvalOptions(out=tmp_path, split=protocol)
    outer = split_for_seed(data, options, seed=2)
    inner = split_for_seed(data, replace(options, validation=True), seed=2)
    assert inner.protocol == f"{protocol} validation"
    assert Counter(inner.train) + Counter(inner.test) == Counter(outer.train)
    assert not set(inner.test) & set(outer.test)  # no test-half event is ever evaluated


def test_changing_the_test_half_does_not_change_the_validation_split(
    data: EvalData, tmp_path: Path
) -> None:
    options = EvalOptions(out=tmp_path, validation=True)
    outer = split_for_seed(data, replace(options, validation=False), seed=0)
    held = set(outer.test)
    # The same training half with other test events: the validation slice stays the same.
    other = replace(
        data,
        interactions=[
            x if x not in held else x._replace(item_id=data.item_ids[0]) for x in data.interactions
        ],
    )
    assert split_for_seed(other, options, seed=0).test == split_for_seed(data, options, seed=0).test
