"""The read path's shortcut for whole short messages reads exactly what the ABNF path reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.load import connection
from wsstorm.load.connection import WSConnection

# Server frames (unmasked): text, binary, continuation, close, pong; FIN on or off; RSV bits at times.
_FRAME = st.tuples(
    st.sampled_from([0x1, 0x2, 0x0, 0x8, 0xA, 0x3]),
    st.booleans(),
    st.sampled_from([0, 0, 0, 0x40, 0x10]),
    st.binary(max_size=130),
)


def _wire(frames: list[tuple[int, bool, int, bytes]]) -> bytes:
    out = b""
    for op, fin, rsv, payload in frames:
        n = len(payload)
        b1 = 0x80 * fin | rsv | op
        head = bytes((b1, n)) if n < 126 else bytes((b1, 126)) + n.to_bytes(2, "big")
        out += head + payload
    return out


def _read_all(data: bytes) -> list[object]:
    """Everything read() returns from ``data`` (then its error: the socket is gone), as comparable values."""
    c = WSConnection("ws://127.0.0.1:9/")
    c._buf = bytearray(data)
    c._open = True
    assert c._cont is None  # as open leaves it: made by the first frame the shortcut does not take
    out: list[object] = []
    for _ in range(64):
        try:
            inc = c.read()
        except Exception as exc:  # the end of the buffer (no socket), or a protocol error
            out.append((type(exc).__name__, str(exc)))
            break
        assert inc is not None
        out.append((inc.kind, inc.data, inc.close))
    out.append(bytes(c._buf))
    return out


@settings(max_examples=examples(300))
@given(st.lists(_FRAME, max_size=6))
def test_shortcut_reads_what_the_abnf_path_reads(frames: list[tuple[int, bool, int, bytes]]) -> None:
    data = _wire(frames)
    fast = _read_all(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(connection, "_WHOLE", frozenset())  # every frame through ABNF and the continuation checks
        slow = _read_all(data)
    assert fast == slow


def test_a_whole_message_inside_a_fragmented_one_is_still_refused() -> None:
    data = _wire([(0x1, False, 0, b"he"), (0x1, True, 0, b"x"), (0x0, True, 0, b"llo")])
    out = _read_all(data)
    assert out[0][0] == "WebSocketProtocolException"
    data = _wire([(0x1, False, 0, b"he"), (0x0, True, 0, b"llo"), (0x2, True, 0, b"\x00\x01")])
    assert _read_all(data)[:2] == [("message", b"hello", None), ("message", b"\x00\x01", None)]
