"""The offsets a poll moves each (topic, partition) to: the last message's of each pair, the
pairs in order of first appearance, as a dict built over every message gives them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from monitor.core.engine import _last_offsets
from monitor.events.message import MessageBatch

_MESSAGE = st.tuples(st.sampled_from(["predictions", "labels"]), st.integers(0, 3),
                     st.integers(0, 10**6))  # fmt: skip


@given(st.lists(_MESSAGE, min_size=1, max_size=40))
def test_last_offset_of_each_pair_in_order_of_first_appearance(
    messages: list[tuple[str, int, int]],
) -> None:
    topics, partitions, offsets = (list(column) for column in zip(*messages, strict=True))
    batch = MessageBatch(topics, partitions, offsets, [None] * len(messages), lambda i: None)
    every = dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))
    found = _last_offsets(batch)
    assert found == every
    assert list(found) == list(every)


@given(st.integers(0, 2**32), st.integers(257, 3000), st.sets(st.integers(0, 7), min_size=1))
def test_a_long_poll_missing_some_pairs_gives_the_same(
    seed: int, size: int, pairs: set[int]
) -> None:
    """A long poll of some of the pairs its topics and partitions could form (a fetch that
    brought a few partitions): the search from its end does not stop early."""
    rng = random.Random(seed)
    chosen = sorted(pairs)
    topics: list[str] = []
    partitions: list[int] = []
    offsets: list[int] = []
    next_offset = {p: rng.randrange(10**6) for p in chosen}
    for _ in range(size):
        p = rng.choice(chosen)
        topics.append("predictions" if p < 4 else "labels")
        partitions.append(p % 4)
        offsets.append(next_offset[p])
        next_offset[p] += 1
    batch = MessageBatch(topics, partitions, offsets, [None] * size, lambda i: None)
    every = dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))
    found = _last_offsets(batch)
    assert found == every
    assert list(found) == list(every)
