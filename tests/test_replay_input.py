"""Which (topic, partition) pairs a capture holds: ``capture_partitions`` decodes only the
lines that do not start as a pair already found does; here it is checked against every
line parsed on its own with the standard library."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import native, replay
from monitor.replay import capture_partitions


def _by_json(lines: list[bytes]) -> set[tuple[str, int]]:
    """The pairs of the lines that are envelopes, each line parsed with ``json``."""
    found: set[tuple[str, int]] = set()
    for line in lines:
        try:
            env = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(env, dict)
            and isinstance(env.get("topic"), str)
            and type(env.get("partition")) is int
        ):
            found.add((env["topic"], env["partition"]))
    return found


def _kcat(topic: str, partition: int, offset: int) -> bytes:
    payload = json.dumps({"prediction_id": f"p{offset}", "model": "m"})
    line = {"topic": topic, "partition": partition, "offset": offset, "payload": payload}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _read_with(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], hint: int
) -> set[tuple[str, int]]:
    """The pairs ``capture_partitions`` finds in a capture of ``lines``, read ``hint``
    bytes at a time."""
    path = tmp_path_factory.mktemp("cap") / "capture.jsonl"
    path.write_bytes(b"".join(lines))
    before = replay._READ_HINT
    replay._READ_HINT = hint
    try:
        return capture_partitions([str(path)])
    finally:
        replay._READ_HINT = before


_TOPICS = st.sampled_from(["predictions", "labels", 'odd "name"', "é"])
_LINE = st.one_of(
    st.builds(_kcat, _TOPICS, st.integers(0, 12), st.integers(0, 10**6)),
    # broken lines that start as a good one does
    st.builds(lambda t, p: _kcat(t, p, 0)[:-8] + b"\n", _TOPICS, st.integers(0, 12)),
    # the keys in another order, spaces, blank lines, not JSON, the wrong types
    st.builds(
        lambda t, p: json.dumps({"partition": p, "payload": None, "topic": t}).encode() + b"\n",
        _TOPICS, st.integers(0, 12),
    ),
    st.sampled_from([b"\n", b"  \n", b"not json\n", b'{"topic":"labels","partition":"1"}\n',
                     b'{"topic":"labels","partition":1.0}\n', b"[1,2]\n"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINE, max_size=60), st.integers(1, 400))
def test_capture_partitions_match_each_line_parsed(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], hint: int
) -> None:
    # A small read hint: the pairs found in one block decide what the next blocks decode.
    # The first line a kcat envelope: the file is read as a capture, not as plain events.
    lines = [_kcat("labels", 0, 0), *lines]
    assert _read_with(tmp_path_factory, lines, hint) == _by_json(lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINE, max_size=30), _TOPICS, st.integers(0, 12), st.integers(1, 400),
       st.booleans())  # fmt: skip
def test_capture_partitions_read_the_last_line_without_its_newline(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], topic: str, partition: int,
    hint: int, crlf: bool,
) -> None:
    # A capture cut after its last line's end (no newline), or written with CRLF line ends:
    # the last line's pair is found all the same, however the reads cut the file.
    last = _kcat(topic, partition, 1)[:-1]
    lines = [_kcat("labels", 0, 0), *lines, last]
    if crlf:
        lines = [line[:-1] + b"\r\n" if line.endswith(b"\n") else line for line in lines]
    assert _read_with(tmp_path_factory, lines, hint) == _by_json(lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINE, max_size=60), st.integers(1, 400))
def test_capture_partitions_are_the_same_without_the_compiled_scan(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], hint: int
) -> None:
    # The compiled kcat_unknown finds the lines to decode; the pattern stands in for it.
    lines = [_kcat("labels", 0, 0), *lines]
    compiled = _read_with(tmp_path_factory, lines, hint)
    before = native.use(False)
    try:
        plain = _read_with(tmp_path_factory, lines, hint)
    finally:
        native.use(before)
    assert compiled == plain == _by_json(lines)
