"""trainer.eval.responsiveness: the NTR §4 simulation on a world where the answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainer.data.synthetic import SyntheticWorld, make_world
from trainer.eval.metrics import Serving
from trainer.eval.responsiveness import SimConfig, simulate, start_histories
from trainer.eval.similarity import Similarity, category_labels
from veto.encoder import UserEncoder
from veto.errors import ConfigError
from veto.events import N_EVENT_TYPES, EventType
from veto.ranking import OFF, Strengths

CONFIG = SimConfig(n_users=60, steps=20, top_k=10, start_events=5, seed=0, chunk_size=32)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return make_world(n_items=400, n_users=40, n_categories=8, dim=16, events_per_user=12, seed=2)


def _setup(world: SyntheticWorld) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    labels = category_labels(world.categories)
    assert labels is not None
    index = {x: i for i, x in enumerate(world.item_ids)}
    starts = start_histories(
        world.interactions, item_index=index, n_users=CONFIG.n_users, start_events=5, seed=0
    )
    return Similarity(labels), starts


def _encoder(dislike_gate: float, *, dislike_attention: float = 2.0) -> UserEncoder:
    """The initial encoder (a mean of the history) with the dislike gate set and more
    attention on dislikes (as a trained model learns): a plain mean over 10 events dilutes
    one dislike too much to leave the planted category."""
    base = UserEncoder.initial(dim=16, history_len=10, n_types=N_EVENT_TYPES, seed=1)
    gate, type_logits = base.gate.copy(), base.type_logits.copy()
    gate[EventType.DISLIKE] = dislike_gate
    type_logits[EventType.DISLIKE] = dislike_attention
    return dataclasses.replace(base, gate=gate, type_logits=type_logits)


def test_a_dislike_that_pushes_away_lowers_the_similar_share(world: SyntheticWorld) -> None:
    labels, starts = _setup(world)
    result = simulate(_encoder(-1.0), world.item_vectors, labels, starts, config=CONFIG)
    assert result.n_users == CONFIG.n_users
    assert result.relative_change < -0.2
    assert result.similar_share_with < result.similar_share_without
    assert result.return_rate_with < result.return_rate_without


def test_the_plain_initial_encoder_stops_returning_the_disliked_item(
    world: SyntheticWorld,
) -> None:
    labels, starts = _setup(world)
    encoder = _encoder(-1.0, dislike_attention=1.0)
    result = simulate(encoder, world.item_vectors, labels, starts, config=CONFIG)
    assert result.relative_change <= 0.0
    assert (
        result.return_rate_without == 1.0
    )  # x is the newest like: it comes back without a dislike
    assert result.return_rate_with < 0.5


def test_a_zeroed_dislike_gate_changes_almost_nothing(world: SyntheticWorld) -> None:
    labels, starts = _setup(world)
    result = simulate(_encoder(0.0), world.item_vectors, labels, starts, config=CONFIG)
    assert abs(result.relative_change) < 0.05


def test_a_model_without_dislike_input_has_zero_change(world: SyntheticWorld) -> None:
    labels, starts = _setup(world)
    result = simulate(
        _encoder(-1.0), world.item_vectors, labels, starts, config=CONFIG, drop_dislike=True
    )
    assert result.relative_change == 0.0
    assert result.return_rate_with == result.return_rate_without


def test_the_simulation_is_seeded(world: SyntheticWorld) -> None:
    labels, starts = _setup(world)
    enc = _encoder(-1.0)
    a = simulate(enc, world.item_vectors, labels, starts, config=CONFIG)
    b = simulate(enc, world.item_vectors, labels, starts, config=CONFIG)
    c = simulate(
        enc, world.item_vectors, labels, starts, config=dataclasses.replace(CONFIG, seed=9)
    )
    assert a == b
    assert a != c


def test_empty_start_histories_are_brand_new_users(world: SyntheticWorld) -> None:
    labels, _ = _setup(world)
    index = {x: i for i, x in enumerate(world.item_ids)}
    starts = start_histories(
        world.interactions, item_index=index, n_users=10, start_events=0, seed=0
    )
    assert starts == [[]] * 10
    result = simulate(_encoder(-1.0), world.item_vectors, labels, starts, config=CONFIG)
    assert result.relative_change < 0


def test_start_histories_are_the_earliest_events_of_real_users(world: SyntheticWorld) -> None:
    index = {x: i for i, x in enumerate(world.item_ids)}
    starts = start_histories(
        world.interactions, item_index=index, n_users=5, start_events=3, seed=0
    )
    firsts: dict[str, list[tuple[int, int]]] = {}
    for x in world.interactions:
        firsts.setdefault(x.user_id, [])
        if len(firsts[x.user_id]) < 3:
            firsts[x.user_id].append((index[x.item_id], int(x.type)))
    assert all(s in firsts.values() for s in starts)


def test_bad_simulation_settings_are_config_errors(world: SyntheticWorld) -> None:
    labels, _ = _setup(world)
    with pytest.raises(ConfigError, match="steps"):
        SimConfig(steps=0)
    with pytest.raises(ConfigError, match="too small"):
        simulate(
            _encoder(-1.0),
            world.item_vectors[:30],
            Similarity(labels.labels[:30]),
            [[]],
            config=CONFIG,
        )


def test_the_counterfactual_replaces_the_like_of_x_by_a_dislike(world: SyntheticWorld) -> None:
    # A dislike read exactly like a like (same gate, attention, no dislike channel): when the
    # dislike replaces the like of x the two branches see the same input, so nothing moves;
    # adding a second event would have moved the state.
    similarity, starts = _setup(world)
    encoder = _encoder(1.0, dislike_attention=0.0)
    result = simulate(encoder, world.item_vectors, similarity, starts, config=CONFIG)
    assert result.relative_change == 0.0
    assert result.similar_share_with == result.similar_share_without


def test_the_dislike_channel_moves_the_next_list_away(world: SyntheticWorld) -> None:
    similarity, starts = _setup(world)
    plain = _encoder(1.0, dislike_attention=0.0)
    channel = dataclasses.replace(plain, dislike_w=np.full(16, -3.0, dtype=np.float32))
    result = simulate(channel, world.item_vectors, similarity, starts, config=CONFIG)
    assert result.relative_change < -0.2


def test_served_ranking_with_a_dislike_penalty_moves_further_away(world: SyntheticWorld) -> None:
    labels, starts = _setup(world)
    encoder = _encoder(-0.2)  # a weak dislike input: most of the move must come from serving
    plain = simulate(encoder, world.item_vectors, labels, starts, config=CONFIG)
    prior = np.zeros(len(world.item_ids), dtype=np.float32)
    served = simulate(
        encoder,
        world.item_vectors,
        labels,
        starts,
        config=CONFIG,
        serving=Serving(prior, Strengths(dislike_penalty=1.0, penalty_window=1)),
    )
    assert served.relative_change < plain.relative_change - 0.1
    # The penalty is the disliked item's own cosine too: it leaves the top-K.
    assert served.return_rate_with < plain.return_rate_with
    off = simulate(
        encoder, world.item_vectors, labels, starts, config=CONFIG, serving=Serving(prior, OFF)
    )
    assert off == plain  # the served path with both strengths off is the model's own ranking
