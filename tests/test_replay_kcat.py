"""The replay's compiled reader of kcat ``-J`` lines (``_native.kcat_lines``) reads every
line as msgspec does: each line it takes has the fields msgspec decodes from it, and a
block of lines becomes the same messages, line numbers and bad-line counts with the
compiled reader as without it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import native
from monitor.replay import _ENVELOPE, _Pending, _utf8

pytestmark = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")

#: Strings kcat writes as ASCII (non-ASCII letters escaped): what the compiled reader takes.
_PLAIN = st.text(
    st.one_of(
        st.characters(max_codepoint=0x7F),
        st.sampled_from(['"', "\\", "/", "x", "ä", "\u2228", "\b", "\f", "\n", "\r", "\t",
                         "\x00", "\x1f", "\x7f"]),
    ),
    max_size=40,
)  # fmt: skip
#: Any strings: lone surrogates and characters beyond the BMP among them.
_TEXT = st.one_of(_PLAIN, st.text(st.characters(), max_size=20))
_INT = st.one_of(st.integers(-5, 5), st.integers(-(10**18), 10**18), st.integers(-(10**25), 10**25))
_VALUE = st.one_of(
    st.none(), st.booleans(), _INT, st.floats(allow_nan=False), _TEXT,
    st.lists(_TEXT, max_size=2), st.dictionaries(_TEXT, _TEXT, max_size=2),
)  # fmt: skip


def _rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 3)) == 0


@st.composite
def _envelope_line(draw: st.DrawFn) -> bytes:
    """A kcat line: mostly as kcat writes it (its fields in its order, compact, ASCII),
    else in another order, some fields missing, of another type or more of them, spaced,
    not escaped to ASCII; with escapes json.dumps does not write; CRLF or not."""
    fields: dict[str, object] = {
        "topic": draw(st.sampled_from(["predictions", "labels"])),
        "partition": draw(st.integers(0, 11)),
        "offset": draw(_INT),
        "tstype": "create",
        "ts": draw(_INT),
        "broker": 1,
        "key": draw(st.one_of(st.none(), _PLAIN)),
        "payload": draw(st.one_of(st.none(), _PLAIN)),
    }
    if _rarely(draw):
        fields["topic"] = draw(_TEXT)
    if _rarely(draw):
        fields["payload"] = draw(_TEXT)
    if _rarely(draw):
        fields["headers"] = draw(st.sampled_from([["a", "1"], {"a": "1"}, None]))
    if _rarely(draw):
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
            if draw(st.booleans()):
                fields.pop(name, None)
            else:
                fields[name] = draw(_VALUE)
    if _rarely(draw):
        for name in draw(st.lists(_TEXT, max_size=2)):
            fields[name] = draw(_VALUE)
    items = list(fields.items())
    if _rarely(draw):
        items = draw(st.permutations(items))
    text = json.dumps(
        dict(items),
        ensure_ascii=not _rarely(draw),
        separators=(", ", ": ") if _rarely(draw) else (",", ":"),
    )
    # escapes json.dumps does not write, as valid as those it does
    text = text.replace("/", draw(st.sampled_from(["/", "\\/"])))
    text = text.replace("x", draw(st.sampled_from(["x", "\\u0078"])))
    text = text.replace("ä", draw(st.sampled_from(["ä", "\\u00E4"])))
    end = draw(st.sampled_from(["\n", "\r\n", "", " \n"]))
    return text.encode("utf-8", "surrogatepass") + end.encode()


#: Lines that are not envelopes, or are but not in the form the compiled reader takes.
_ODD = st.one_of(
    # a good line cut short, a byte changed, two keys the same, garbage
    _envelope_line().map(lambda line: line[: len(line) // 2] + b"\n"),
    st.tuples(_envelope_line(), st.integers(0, 400), st.binary(min_size=1, max_size=1)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    ),
    st.just(b'{"topic":"labels","partition":1,"partition":2,"payload":"{}"}\n'),
    st.just(b'{"topic":"labels","partition":1,"payload":"{}","payload":null}\n'),
    st.just(b'{"topic":"labels","partition":01,"payload":"{}"}\n'),
    st.just(b'{"topic":"labels","partition":-0,"payload":"{}"}\n'),
    st.just(b'{"topic":"labels","partition":1e0,"payload":"{}"}\n'),
    st.just(b'{"topic":"labels","partition":1,"payload":"\\ud83d\\ude00 \\ud800"}\n'),
    st.just(b'{"topic":"la\\u0062els","partition":1,"payload":"{}"}\n'),
    st.just(b'{"top\\u0069c":"labels","partition":1,"payload":"{}"}\n'),
    st.binary(max_size=50),
    st.sampled_from([b"\n", b"  \n", b"not json\n", b"[1,2]\n", b"{}\n", b"null\n"]),
)
#: Mostly envelopes, some odd lines.
_LINE = st.one_of(_envelope_line(), _envelope_line(), _envelope_line(), _ODD)


def _by_msgspec(line: bytes) -> tuple[object, ...] | None:
    try:
        env = _ENVELOPE.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return env.topic, env.partition, env.offset, env.ts, _utf8(env.payload)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=20))
def test_each_line_read_is_what_msgspec_reads(lines: list[bytes]) -> None:
    kernels = native.kernels()
    assert kernels is not None
    *columns, others = kernels.kcat_lines(lines)
    assert all(len(column) == len(lines) for column in columns)
    for i, line in enumerate(lines):
        read = tuple(column[i] for column in columns)
        if i in others:
            assert read == (None,) * 5
        else:
            assert read == _by_msgspec(line), line
            assert type(read[0]) is str and type(read[4]) in (bytes, type(None))
    assert others == sorted(others)


def _file_lines(data: bytes) -> list[bytes]:
    """The lines of a file, as ``readlines`` gives them (split at newlines only)."""
    pieces = data.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    return [*lines, pieces[-1]] if pieces[-1] else lines


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=20), st.integers(0, 2))
def test_a_chunk_reads_as_its_lines_read_one_by_one(lines: list[bytes], skip: int) -> None:
    kernels = native.kernels()
    assert kernels is not None
    data = b"".join(lines)
    start = sum(len(line) for line in _file_lines(data)[:skip])  # from a line's start
    split = _file_lines(data[start:])
    *columns, others, starts = kernels.kcat_chunk(data, start, len(data))
    assert (*columns, others) == kernels.kcat_lines(split)
    bounds = memoryview(starts).cast("q").tolist()
    assert [data[a:b] for a, b in itertools.pairwise(bounds)] == split
    assert bounds[-1] == len(data) and (not split or bounds[0] == start)
    for line, at in zip(split, bounds, strict=False):  # a stop inside a line is refused
        if len(line) > 1 and line.endswith(b"\n"):
            with pytest.raises(ValueError):
                kernels.kcat_chunk(data, start, at + len(line) - 1)
            break
    with pytest.raises(ValueError):
        kernels.kcat_chunk(data, start, len(data) + 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(_LINE, max_size=40), st.sampled_from([1, 7, 64, 500, 1 << 20]))
def test_a_capture_reads_the_same_in_chunks_as_line_by_line(lines: list[bytes], hint: int) -> None:
    """read_batches with the compiled reader (blocks of ``hint`` bytes read at once, lines
    cut between them) against msgspec on each line: the same columns, the same messages
    rebuilt from their lines, the same bad lines."""
    import tempfile

    from monitor import replay

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.jsonl"
        path.write_bytes(b"".join(lines))
        read = []
        for compiled in (True, False):
            bad: dict[str, int] = {"bad_envelope": 11}
            before, hint_before = native.use(compiled), replay._READ_HINT
            replay._READ_HINT = hint
            try:
                batches = list(replay.read_batches([str(path)], bad, 7))
            finally:
                native.use(before)
                replay._READ_HINT = hint_before
            columns = [(b.topics, b.partitions, b.offsets, b.timestamps, b.values)
                       for b in batches]  # fmt: skip
            read.append((columns, [list(b) for b in batches], bad))
    assert read[0] == read[1]


def _block(lines: list[bytes], compiled: bool) -> tuple[tuple[object, ...], dict[str, int]]:
    """What a block of ``lines`` adds to the pending messages (read from line 3 of a
    file), and the bad lines it counts."""
    pending, bad = _Pending(), {"bad_envelope": 11}  # past ten: no second decode to log
    before = native.use(compiled)
    try:
        pending.add_lines(list(lines), 3, "capture.jsonl", bad)
    finally:
        native.use(before)
    columns = (pending.topics, pending.partitions, pending.offsets, pending.stamps,
               pending.payloads, pending.numbers, pending.sources)  # fmt: skip
    return columns, bad


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINE, max_size=30))
def test_a_block_reads_the_same_with_and_without_the_compiled_reader(
    lines: list[bytes],
) -> None:
    compiled, bad = _block(lines, True)
    assert (compiled, bad) == _block(lines, False)
    count = sum(1 for line in lines if line.strip() and _by_msgspec(line) is None)
    assert bad == {"bad_envelope": 11 + count}


def test_a_batch_rebuilds_a_rejected_message_from_its_line(tmp_path: Path) -> None:
    # The batch keeps each message's line: a whole Message (key, headers) is decoded
    # again from it only when the core asks for one.
    from monitor.replay import read_batches

    line = {"topic": "labels", "partition": 2, "offset": 7, "ts": 5, "key": "k",
            "headers": ["h", "v"], "payload": '{"a": "\\u00e9"}'}  # fmt: skip
    plain = dict(line, headers=None)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(
        b"".join(json.dumps(x, separators=(",", ":")).encode() + b"\n" for x in (line, plain))
    )
    (batch,) = read_batches([str(path)], {}, 10)
    for message in batch:
        assert (message.topic, message.partition, message.key) == ("labels", 2, b"k")
        assert message.value == b'{"a": "\\u00e9"}'
        assert message.timestamp_ms == 5
    assert batch[0].headers == [("h", b"v")] and batch[1].headers == []


def test_long_lines_and_arguments() -> None:
    kernels = native.kernels()
    assert kernels is not None
    payload = "x\\" * 50_000
    lines = [b'{"topic":"t","partition":0,"payload":%b}' % json.dumps(p).encode()
             for p in ("", payload, payload * 3, "short")]  # fmt: skip
    assert kernels.kcat_lines(lines)[4] == [b"", payload.encode(), payload.encode() * 3,
                                            b"short"]  # fmt: skip
    with pytest.raises(TypeError):
        kernels.kcat_lines((b"{}",))
    with pytest.raises(TypeError):
        kernels.kcat_lines([b"{}", "{}"])
    chunk = b'{"topic":"t",\n{"topic":"u",\n\n'
    assert kernels.kcat_unknown(chunk, 0, len(chunk), (b'{"topic":"t",',)) == [14, 28]
    assert kernels.kcat_unknown(chunk, 14, len(chunk), ()) == [14, 28]
    with pytest.raises(ValueError):
        kernels.kcat_unknown(chunk, 0, len(chunk) + 1, ())
    with pytest.raises(TypeError):
        kernels.kcat_unknown(chunk, 0, len(chunk), ("t",))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("hint", [100, 3000])
def test_line_numbers_stand_for_missing_offsets_across_blocks_and_bad_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool, hint: int
) -> None:
    # Blocks of a few lines or of about fifty (a small read hint), bad and blank lines
    # among them: a message without an offset gets its own line number whatever was
    # skipped before it.
    from monitor import replay

    monkeypatch.setattr(replay, "_READ_HINT", hint)
    lines, expected = [], []
    for number in range(1, 200):
        if number % 19 == 0:
            lines.append(b"garbage\n" if number % 2 else b"\n")
            continue
        offset = number * 10 if number % 3 else None
        line = {"topic": "labels", "partition": 0, "payload": "{}"}
        if offset is not None:
            line["offset"] = offset
        lines.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        expected.append(number if offset is None else offset)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"".join(lines))
    bad: dict[str, int] = {}
    before = native.use(compiled)
    try:
        batches = list(replay.read_batches([str(path)], bad, 13))
    finally:
        native.use(before)
    assert [o for batch in batches for o in batch.offsets] == expected
    # every message rebuilt whole from its line, as for a reject
    assert [message.offset for batch in batches for message in batch] == expected
    assert bad == {"bad_envelope": sum(1 for n in range(1, 200) if n % 38 == 19)}
