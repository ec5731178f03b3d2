"""The replay's compiled reader of kcat ``-J`` lines with payloads full of escaped quotes
(a JSON text inside a string: what every prediction's line holds), which it unescapes a
block of 16 bytes at a time when every stop byte of the block is an escaped quote's
backslash: each payload as msgspec decodes it, whatever the escapes' places against the
blocks (a pair cut by a block's end, an escaped backslash before a quote, the closing
quote, other escapes and bytes beside them)."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from monitor import native
from monitor.replay import _ENVELOPE, _utf8

pytestmark = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")

#: Pieces of payload text: mostly quotes among plain bytes, some other escapes.
_PIECES = ['"', '"', '"', "a", "bc", "{", "}", ":", ",", "0.25", "\\", '\\"', "/", "\n", "\t",
           "é", "\u2228", "x" * 15, "y" * 16, "z" * 17]  # fmt: skip


def _line(payload: str, pad: int) -> bytes:
    fields = {"topic": "predictions", "partition": 1, "offset": 7, "tstype": "create",
              "ts": 1700000000000, "broker": 1, "key": "k" * pad, "payload": payload}  # fmt: skip
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _payload(line: bytes) -> bytes | None:
    return _utf8(_ENVELOPE.decode(line).payload)


def _prediction(i: int) -> str:
    features = {f"f{k}": round((i * 7 + k) % 13 / 3 - 2, 1) for k in range(10)}
    event = {"prediction_id": f"p{i:08d}", "model": "m", "ts": 1700000000.0 + i,
             "prediction": i % 2, "score": 0.5, "features": features}  # fmt: skip
    return json.dumps(event, separators=(",", ":"))


@pytest.mark.parametrize("seed", range(30))
def test_payloads_read_as_msgspec_reads_them(seed: int) -> None:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the compiled kernels are off (MONITOR_NATIVE=0)")
    rng = random.Random(seed)
    payloads = [_prediction(seed * 100 + k) for k in range(3)]
    payloads += ["".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 60)))
                 for _ in range(20)]  # fmt: skip
    lines = [_line(p, pad) for p in payloads for pad in range(18)]  # every place in a block
    *columns, others = kernels.kcat_lines(lines)
    data = b"".join(lines)
    *chunked, chunk_others, _ = kernels.kcat_chunk(data, 0, len(data))
    assert (*chunked, chunk_others) == (*columns, others)
    assert others == []  # every line compact ASCII (other letters escaped): all read
    for i, line in enumerate(lines):
        assert columns[4][i] == _payload(line) == payloads[i // 18].encode(), line


def test_the_reader_takes_the_plainest_lines_of_a_prediction() -> None:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the compiled kernels are off (MONITOR_NATIVE=0)")
    lines = [_line(_prediction(i), i % 16) for i in range(64)]
    *columns, others = kernels.kcat_lines(lines)
    assert others == []
    assert columns[4] == [_prediction(i).encode() for i in range(64)]
    assert [msgspec.json.decode(p) for p in columns[4]] == [
        json.loads(_prediction(i)) for i in range(64)
    ]
